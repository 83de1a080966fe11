"""Which stories go into the next edition. Pure: no I/O.

Translation pairs (known from `pairing`) become one story, with how they were paired; related
posts are asked of the caller's `related` function, which sees the whole edition so that it can
keep it out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from pipeline.config import EditionSection
from pipeline.models import Edition, Pairing, Post, Related, Story

RelatedFinder = Callable[[Story, frozenset[str]], dict[str, tuple[Related, ...]]]
PairingOf = Callable[[str], Pairing | None]  # a post's guid → how it was paired


def stories_from(
    languages: Sequence[str],
    unsent: Mapping[str, Sequence[Post]],
    translations: Mapping[str, str],
    now: datetime,
    grace: timedelta,
) -> list[Story]:
    """Stories from the unsent posts, newest first.

    A post and its unsent translation make one story. A post whose translation is known but
    already gone out (or archived) goes alone at once. With two languages, a post whose
    translation is not known yet waits `grace`, then goes alone.
    """
    waiting = {post.guid: post for lang in languages for post in unsent[lang]}
    stories: list[Story] = []
    for lang in languages:
        for post in unsent[lang]:
            if post.guid not in waiting:
                continue
            partner = translations.get(post.guid)
            if partner in waiting:
                other = waiting.pop(partner)
                stories.append(Story(posts={post.lang: post, other.lang: other}))
            elif partner is None and len(languages) == 2 and now - post.published < grace:
                continue  # its translation may still come
            else:
                stories.append(Story(posts={post.lang: post}))
            del waiting[post.guid]
    return sorted(stories, key=lambda story: story.published, reverse=True)


def compose(
    edition_id: str,
    languages: Sequence[str],
    unsent: Mapping[str, Sequence[Post]],
    translations: Mapping[str, str],
    related: RelatedFinder,
    now: datetime,
    settings: EditionSection,
    pairing_of: PairingOf | None = None,
) -> Edition | None:
    """The next edition, or None when there is nothing new to send.

    At most `max_stories` stories, the newest; the others stay unsent for the next edition.
    Related posts never come from the edition itself, unless configured otherwise. A pair's
    story records how it was paired, when `pairing_of` knows.
    """
    grace = timedelta(hours=settings.translation_grace_hours)
    chosen = stories_from(languages, unsent, translations, now, grace)[: settings.max_stories]
    if not chosen:
        return None
    in_edition = frozenset(
        guid
        for story in chosen
        for post in story.posts.values()
        for guid in (post.guid, translations.get(post.guid, post.guid))
    )
    keep_out = frozenset() if settings.related_from_same_edition else in_edition
    stories = tuple(
        replace(
            story,
            related=related(story, keep_out),
            pair=pairing_of(next(iter(story.posts.values())).guid)
            if pairing_of and len(story.posts) > 1
            else None,
        )
        for story in chosen
    )
    return Edition(id=edition_id, created_at=now, languages=tuple(languages), stories=stories)

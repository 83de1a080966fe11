"""Which stories go into the next edition, and their related posts. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pipeline.config import EditionSection
from pipeline.models import Edition, Post, Story
from pipeline.pairing import pair
from pipeline.related import RelatedIndex


def stories_from(
    languages: Sequence[str],
    unsent: Mapping[str, Sequence[Post]],
    now: datetime,
    grace: timedelta,
) -> list[Story]:
    """Translation pairs become one story; with two languages, a post without its translation
    waits out the grace period, then goes alone. Newest first."""
    if len(languages) == 2:
        first, second = languages
        pairs, alone = pair(unsent[first], unsent[second])
        stories = [Story(posts={first: a, second: b}) for a, b in pairs]
    else:
        alone = [post for lang in languages for post in unsent[lang]]
        stories = []
    if len(languages) == 2:  # an untranslated post waits for its translation, a while
        alone = [post for post in alone if now - post.published >= grace]
    stories += [Story(posts={post.lang: post}) for post in alone]
    return sorted(stories, key=lambda story: story.published, reverse=True)


def compose(
    edition_id: str,
    languages: Sequence[str],
    unsent: Mapping[str, Sequence[Post]],
    archive: Mapping[str, Sequence[Post]],
    now: datetime,
    settings: EditionSection,
) -> Edition | None:
    """The next edition, or None when there is nothing new to send.

    At most `max_stories` stories, the newest; the others stay unsent for the next edition.
    Related posts never come from the edition itself.
    """
    grace = timedelta(hours=settings.translation_grace_hours)
    chosen = stories_from(languages, unsent, now, grace)[: settings.max_stories]
    if not chosen:
        return None
    in_edition = {post.guid for story in chosen for post in story.posts.values()}
    indexes = {lang: RelatedIndex(archive[lang]) for lang in languages}
    stories = tuple(
        Story(
            posts=story.posts,
            related={
                lang: indexes[lang].pick(post, settings.related_per_story, in_edition)
                for lang, post in story.posts.items()
            },
        )
        for story in chosen
    )
    return Edition(id=edition_id, created_at=now, languages=tuple(languages), stories=stories)

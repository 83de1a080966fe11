"""The editorial stage around `compose`: analyse new posts, pair translations (fetching post
pages for their `hreflang` links), and find each story's related posts — the I/O that the pure
`pairing`, `related` and `compose` modules leave to their caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pipeline.config import Settings
from pipeline.errors import FeedError
from pipeline.fetch import FeedLimits, Outcome, Request, fetch_each, user_agent
from pipeline.log import log, stage
from pipeline.models import Post, Related, Story
from pipeline.pairing import Pair, alternates_in, pair_archive
from pipeline.postindex import PostIndex, Translations
from pipeline.related import Pick, RelatedIndex, analyze

RECHECK_DAYS = 45  # an unpaired post is paired again while its translation may still appear
PAGE_MAX_BYTES = 2_000_000


class Curator:
    """Keeps the analysed archive current and answers `compose`'s questions."""

    def __init__(self, settings: Settings, index: PostIndex) -> None:
        self.settings = settings
        self.index = index
        self.translations: Translations = index.translations()
        self.related_indexes: dict[str, RelatedIndex] = {}

    def prepare(self, unsent: Mapping[str, Sequence[Post]], now: datetime) -> None:
        """Analyse what is new, pair translations, load each language's related index."""
        with stage("curate_finished") as counts:
            counts["analysed"] = self.index.save_analyses(
                (post, analyze(post)) for post in self.index.unanalysed()
            )
            counts["paired"] = len(self._pair(unsent, now))
            self.translations = self.index.translations()
            self.related_indexes = {
                lang: RelatedIndex(self.index.term_matrix(lang, now))
                for lang in self.settings.languages
            }
            counts["archive"] = {
                lang: len(index.guids) for lang, index in self.related_indexes.items()
            }

    def _pair(self, unsent: Mapping[str, Sequence[Post]], now: datetime) -> list[Pair]:
        if len(self.settings.languages) != 2:
            return []
        first_lang, second_lang = self.settings.languages
        since = now - timedelta(days=RECHECK_DAYS)
        first = self.index.posts_to_pair(first_lang, since)
        second = self.index.posts_to_pair(second_lang, since)
        if self.settings.feeds.fetch_post_pages:
            waiting = {post.guid for posts in unsent.values() for post in posts}
            self._fetch_pages([post for post in (*first, *second) if post.guid in waiting], now)
        known = self.index.alternates(post.url for post in (*first, *second))
        alternates = {url: found for url, found in known.items() if found}
        pairs = pair_archive(first, second, alternates, self.index.overrides())
        self.index.save_pairs(pairs, checked=[*first, *second], source="auto")
        return pairs

    def _fetch_pages(self, posts: Sequence[Post], now: datetime) -> None:
        """Read the `hreflang` alternates of post pages not read before (cached for good)."""
        cached = self.index.alternates(post.url for post in posts)
        wanted = [Request(post.url) for post in posts if post.url not in cached]
        if not wanted:
            return
        limits = FeedLimits(
            timeout_s=self.settings.feeds.timeout_s,
            max_bytes=PAGE_MAX_BYTES,
            user_agent=user_agent(self.settings.sender.contact_url),
        )

        def keep(request: Request, outcome: Outcome) -> None:
            if isinstance(outcome, FeedError) or outcome is None:
                error = str(outcome) if outcome else "not modified"
                log.info("page_unreadable", url=request.location, error=error)
                self.index.save_alternates(request.location, None, error, now)
                return
            found = alternates_in(outcome.body.decode("utf-8", errors="replace"))
            self.index.save_alternates(request.location, found or None, None, now)

        fetch_each(wanted, limits, keep)

    def related(self, story: Story, keep_out: frozenset[str]) -> dict[str, tuple[Related, ...]]:
        """Each language's related posts for `story`. The second language mirrors the first:
        its list holds the translations of the first language's picks where they exist, then
        its own picks."""
        k = self.settings.edition.related_per_story
        picks: dict[str, list[Pick]] = {}
        for lang, post in story.posts.items():
            # a translation is in the other language's index: it can never be picked here
            linked = self.index.linked_with(post)
            picks[lang] = self.related_indexes[lang].pick(post, k, keep_out, linked)
        langs = self.settings.languages
        if len(langs) == 2 and all(lang in story.posts for lang in langs):
            first, second = langs
            picks[second] = self._mirror(picks[first], picks[second], second, keep_out, k)
        return {lang: self._explain(lang, chosen) for lang, chosen in picks.items()}

    def _mirror(
        self, leading: list[Pick], own: list[Pick], lang: str, keep_out: frozenset[str], k: int
    ) -> list[Pick]:
        index = self.related_indexes[lang]
        mirrored: list[Pick] = []
        for pick in leading:
            partner = self.translations.get(pick.guid)
            if partner in index.row and partner not in keep_out:
                mirrored.append(
                    Pick(partner, pick.score, pick.similarity, (), pick.linked, pick.recency)
                )
        chosen = {pick.guid for pick in mirrored}
        mirrored += [pick for pick in own if pick.guid not in chosen]
        return mirrored[:k]

    def _explain(self, lang: str, picks: list[Pick]) -> tuple[Related, ...]:
        posts = self.index.posts(pick.guid for pick in picks)
        names = self.index.term_names(i for pick in picks for i in pick.shared_terms)
        related = []
        for pick in picks:
            reasons = [f"text similarity {pick.similarity:.2f}"]
            if pick.shared_terms:
                reasons.append("shared: " + ", ".join(names[i] for i in pick.shared_terms))
            else:
                reasons.append("translation of a pick of the other edition")
            if pick.linked:
                reasons.append("the two posts link to each other")
            reasons.append(f"recency ×{0.8 + 0.2 * pick.recency:.2f}")
            related.append(Related(posts[pick.guid], pick.score, tuple(reasons)))
        return tuple(related)

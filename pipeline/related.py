"""Related articles: for a post, the archive posts of its language that share its subject.

A first, simple scorer: TF-IDF cosine over stemmed words (stop words removed, per language)
of the title (counted twice) and body, plus the categories, inside one language. Never the
post itself, never a post excluded by the caller (the rest of the edition), and no filler:
nothing below an absolute minimum score, nor far below the best candidate.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache

import snowballstemmer
import stopwordsiso

from pipeline.models import Post, Related
from pipeline.text import text_of_clean_html

MIN_SCORE = 0.1
MIN_SHARE_OF_BEST = 0.75
_WORD = re.compile(r"[^\W\d_]{3,}")
_STEMMERS = {"en": "english", "fr": "french"}


@cache
def _analyzer(lang: str) -> tuple[frozenset[str], snowballstemmer.Stemmer]:
    return frozenset(stopwordsiso.stopwords(lang)), snowballstemmer.stemmer(_STEMMERS[lang])


def _terms(post: Post) -> Counter[str]:
    stop, stemmer = _analyzer(post.lang)
    body = text_of_clean_html(post.content_html) or post.summary
    words = [w for w in _WORD.findall(f"{post.title} {post.title} {body}".lower()) if w not in stop]
    tags = [f"#{category.lower()}" for category in post.categories]
    return Counter(stemmer.stemWords(words) + tags)


class RelatedIndex:
    """The archive of one language, vectorised once, asked for each story."""

    def __init__(self, archive: Sequence[Post]) -> None:
        self.posts = list(archive)
        counts = [_terms(post) for post in self.posts]
        frequency = Counter(term for terms in counts for term in terms)
        total = len(self.posts)
        self.idf = {term: math.log((1 + total) / (1 + n)) + 1 for term, n in frequency.items()}
        self.vectors = [self._vector(terms) for terms in counts]

    def _vector(self, terms: Counter[str]) -> dict[str, float]:
        weights = {t: n * self.idf[t] for t, n in terms.items() if t in self.idf}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {t: w / norm for t, w in weights.items()}

    def pick(self, post: Post, k: int, exclude: Iterable[str] = ()) -> tuple[Related, ...]:
        """Up to `k` archive posts of `post`'s language most like it, best first."""
        if k == 0:
            return ()
        skip = {post.guid, post.url, *exclude}
        query = self._vector(_terms(post))
        scored = sorted(
            (
                Related(candidate, sum(w * vector.get(t, 0.0) for t, w in query.items()))
                for candidate, vector in zip(self.posts, self.vectors, strict=True)
                if candidate.lang == post.lang
                and candidate.guid not in skip
                and candidate.url not in skip
            ),
            key=lambda rel: (-rel.score, rel.post.guid),
        )
        if not scored:
            return ()
        floor = max(MIN_SCORE, scored[0].score * MIN_SHARE_OF_BEST)
        return tuple(rel for rel in scored[:k] if rel.score >= floor)

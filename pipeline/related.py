"""Related articles: for a story, the archive posts of its language that share its subject.
Pure: the archive arrives as a term matrix (see `postindex`), the picks leave as guids.

Scoring, per language:
- text: TF-IDF cosine (sublinear term frequency) over Snowball stems of the title (counted
  three times) and the body, stop words removed, with the categories as extra terms — inside one
  language's archive only;
- the blog's own links: a post that links to the story, or that the story links to, gains;
- recency: the further apart in time, the less a post weighs (a half-life of a year).
Then no filler: nothing below an absolute minimum nor far below the best candidate, none at all
from a young archive; and diversity among the picks by maximal marginal relevance (MMR).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import snowballstemmer
import stopwordsiso
from scipy.sparse import csr_matrix

from pipeline.models import Post
from pipeline.postindex import Analysis, TermMatrix
from pipeline.text import canonical_url, text_of_clean_html

MIN_SCORE = 0.12
MIN_SHARE_OF_BEST = 0.6
MIN_ARCHIVE = 5
LINK_BONUS = 0.1
HALF_LIFE_DAYS = 365.0
MMR_LAMBDA = 0.8
SHORTLIST = 25
TITLE_WEIGHT = 3
_WORD = re.compile(r"[^\W\d_]{3,}")
_HREF = re.compile(r'href="([^"]+)"')
_STEMMERS = {"en": "english", "fr": "french"}
_DAY = 86400.0
_BLOCK = 4096
_CHUNK = 1 << 20


@cache
def _analyzer(lang: str) -> tuple[frozenset[str], snowballstemmer.Stemmer]:
    return frozenset(stopwordsiso.stopwords(lang)), snowballstemmer.stemmer(_STEMMERS[lang])


def analyze(post: Post) -> Analysis:
    """A post's terms (stems and `#categories`, with counts) and its links to its own site."""
    stop, stemmer = _analyzer(post.lang)
    text = f"{post.title} " * TITLE_WEIGHT + (text_of_clean_html(post.content_html) or post.summary)
    words = [word for word in _WORD.findall(text.lower()) if word not in stop]
    terms = Counter(stemmer.stemWords(words))
    terms.update(f"#{category.lower()}" for category in post.categories for _ in range(2))
    site = urlsplit(post.url).netloc
    links = {
        url
        for href in _HREF.findall(post.content_html)
        if (url := canonical_url(href)) and urlsplit(url).netloc == site and url != post.url
    }
    return Analysis(terms=dict(terms), links=frozenset(links))


@dataclass(frozen=True, slots=True)
class Pick:
    """A related post chosen for a story, its score, and what it shares with the story."""

    guid: str
    score: float
    similarity: float
    shared_terms: tuple[int, ...]
    linked: bool
    recency: float


class RelatedIndex:
    """One language's archive as normalised TF-IDF rows, asked once per story."""

    def __init__(self, matrix: TermMatrix) -> None:
        self.guids = matrix.guids
        self.row = {guid: i for i, guid in enumerate(matrix.guids)}
        self.published = matrix.published
        size = len(matrix.guids)
        width = int(matrix.ids.max()) + 1 if len(matrix.ids) else 1
        document_frequency = np.zeros(width, dtype=np.int64)
        for start in range(0, len(matrix.ids), _CHUNK):  # bincount copies to int64: by chunks
            document_frequency += np.bincount(matrix.ids[start : start + _CHUNK], minlength=width)
        idf = (np.log((1 + size) / (1 + document_frequency)) + 1.0).astype(np.float32)
        # float32, in place, a block of rows at a time: 100,000 posts of ~150 distinct terms
        # each fit in a few hundred MB, with no transient copy of the whole archive
        weights = matrix.tf_weights  # made TF-IDF in place: the matrix is not used again
        for first in range(0, size, _BLOCK):
            bounds = matrix.indptr[first : min(first + _BLOCK, size) + 1]
            low, high = int(bounds[0]), int(bounds[-1])
            if high == low:
                continue
            block = weights[low:high]
            block *= idf[matrix.ids[low:high]]
            lengths = np.diff(bounds)
            starts = np.minimum(bounds[:-1] - low, high - low - 1)
            norms = np.sqrt(np.add.reduceat(np.square(block, dtype=np.float64), starts))
            norms[(lengths == 0) | (norms == 0)] = 1.0
            block /= np.repeat(norms, lengths).astype(np.float32)
        self.vectors = csr_matrix((weights, matrix.ids, matrix.indptr), shape=(size, width))

    def pick(
        self, story: Post, k: int, exclude: Collection[str], linked: Collection[str]
    ) -> list[Pick]:
        """Up to `k` archive posts like `story`, best first; never `story` itself nor any
        guid of `exclude`; fewer, or none, rather than weak ones."""
        if k == 0 or story.guid not in self.row:
            return []
        query = self.vectors[self.row[story.guid]].toarray().ravel()
        similarity = self.vectors @ query
        allowed = np.ones(len(self.guids), dtype=bool)
        for guid in (story.guid, *exclude):
            if guid in self.row:
                allowed[self.row[guid]] = False
        if allowed.sum() < MIN_ARCHIVE:
            return []
        days = np.abs(self.published - story.published.timestamp()) / _DAY
        recency = 0.5 ** (days / HALF_LIFE_DAYS)
        bonus = np.zeros(len(self.guids))
        bonus[[self.row[g] for g in linked if g in self.row]] = LINK_BONUS
        score = np.where(allowed, similarity * (0.8 + 0.2 * recency) + bonus * (similarity > 0), -1)
        shortlist = [int(i) for i in np.argsort(-score, kind="stable")[:SHORTLIST]]
        best = score[shortlist[0]] if shortlist else 0.0
        floor = max(MIN_SCORE, best * MIN_SHARE_OF_BEST)
        candidates = [i for i in shortlist if score[i] >= floor]
        chosen = self._diverse(candidates, score, k)
        return [
            Pick(
                guid=self.guids[i],
                score=float(score[i]),
                similarity=float(similarity[i]),
                shared_terms=self._shared(query, i),
                linked=bool(bonus[i]),
                recency=float(recency[i]),
            )
            for i in chosen
        ]

    def _diverse(self, candidates: list[int], score: npt.NDArray[np.float64], k: int) -> list[int]:
        """Maximal marginal relevance: each next pick is relevant and unlike those before."""
        chosen: list[int] = []
        rest = list(candidates)
        while rest and len(chosen) < k:
            if chosen:
                overlap = (self.vectors[rest] @ self.vectors[chosen].T).max(axis=1)
                redundancy = np.asarray(overlap.todense()).ravel()
            else:
                redundancy = np.zeros(len(rest))
            marginal = MMR_LAMBDA * score[rest] - (1 - MMR_LAMBDA) * redundancy
            best = int(np.argmax(marginal))
            chosen.append(rest.pop(best))
        return chosen

    def _shared(self, query: npt.NDArray[np.float64], row: int, most: int = 5) -> tuple[int, ...]:
        """The term ids that weigh most in the story's likeness to archive row `row`."""
        start, end = self.vectors.indptr[row], self.vectors.indptr[row + 1]
        ids = self.vectors.indices[start:end]
        products = self.vectors.data[start:end] * query[ids]
        order = np.argsort(-products, kind="stable")[:most]
        return tuple(int(ids[i]) for i in order if products[i] > 0)

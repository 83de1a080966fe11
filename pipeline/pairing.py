"""Pair each post of one language with its translation in the other. Pure: no I/O.

Evidence, combined into one confidence from 0 to 1:
- the `hreflang` alternate links of each post's web page (decisive when present: a page that
  names its translation settles it, and a page that names another one rules this one out);
- the same featured-image file (WordPress size and language suffixes ignored);
- publication times close together;
- the same author;
- shared "markers" that survive translation: numbers, names in capitals, external links;
- the same HTML structure (paragraphs, list items, links, headings): translators keep it.

The assignment maximises the total confidence over all candidates at once (the Hungarian
algorithm), not greedily, and keeps only pairs above a minimum confidence: a wrong pair is
worse than none. Manual choices (`buzz pair`, `buzz unpair`) override everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from html.parser import HTMLParser
from posixpath import basename
from urllib.parse import urlsplit

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.models import Post
from pipeline.text import canonical_url, text_of_clean_html

MIN_CONFIDENCE = 0.5
DECISIVE = 1.0
_IMAGE_VARIANT = re.compile(r"(?:[-_](?:en|fr|eng|fra|\d+x\d+|scaled|e\d{10,}))+$")
_NUMBER = re.compile(r"\d[\d\s.,\u00a0\u202f]*\d|\d")
_NAME = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-Z][\w-]*(?:\s+[A-Z0-9][\w-]*)*")
_HREF = re.compile(r'href="([^"]+)"')
_STRUCTURE_TAGS = ("<p>", "<li>", "<a ", "<h2>", "<h3>", "<strong>", "<img ")
_TIME_SCALE_H = 36.0

Alternates = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Pair:
    """A post and its translation, with how sure the pairing is."""

    first: Post
    second: Post
    confidence: float


@dataclass(frozen=True, slots=True)
class Overrides:
    """Marketing's decisions: pairs to force and pairs never to make, as (guid, guid)."""

    forced: frozenset[tuple[str, str]] = frozenset()
    broken: frozenset[tuple[str, str]] = frozenset()


@lru_cache(maxsize=8192)
def _markers(post: Post) -> frozenset[str]:
    body = text_of_clean_html(post.content_html)
    text = f"{post.title}. {post.summary} {body}"
    numbers = {re.sub(r"\D", "", n) for n in _NUMBER.findall(text)}
    names = {name.lower() for name in _NAME.findall(text) if len(name) > 2}
    links = {url for href in _HREF.findall(post.content_html) if (url := canonical_url(href))}
    external = {url for url in links if urlsplit(url).netloc != urlsplit(post.url).netloc}
    return frozenset({n for n in numbers if len(n) > 1} | names | external)


@lru_cache(maxsize=8192)
def _structure(post: Post) -> tuple[int, ...]:
    return tuple(post.content_html.count(tag) for tag in _STRUCTURE_TAGS)


def _image_file(post: Post) -> str | None:
    """The image's file stem without WordPress size or language suffixes
    (`chat-fr-1024x576.jpg` → `chat`): translations often get their own copy."""
    if not post.image:
        return None
    stem = basename(urlsplit(post.image).path).lower().rpartition(".")[0]
    return _IMAGE_VARIANT.sub("", stem) or None


def _declared(post: Post, lang: str, alternates: Alternates) -> str | None:
    """The URL that `post`'s page names as its `lang` version, if it names one."""
    declared = alternates.get(post.url, {}).get(lang)
    return canonical_url(declared) if declared else None


def confidence(a: Post, b: Post, alternates: Alternates | None = None) -> float:
    """How sure we are that `b` translates `a`, from 0 to 1."""
    alternates = alternates or {}
    a_says, b_says = _declared(a, b.lang, alternates), _declared(b, a.lang, alternates)
    if a_says == b.url or b_says == a.url:
        return DECISIVE
    if a_says or b_says:
        return 0.0  # a page names its translation, and it is another post
    score = 0.0
    if _image_file(a) and _image_file(a) == _image_file(b):
        score += 0.4
    hours = abs((a.published - b.published).total_seconds()) / 3600
    score += 0.2 * math.exp(-hours / _TIME_SCALE_H)
    if a.author and a.author == b.author:
        score += 0.1
    marks_a, marks_b = _markers(a), _markers(b)
    if marks_a and marks_b:
        score += 0.3 * len(marks_a & marks_b) / len(marks_a | marks_b)
    shape_a, shape_b = _structure(a), _structure(b)
    if any(shape_a) and any(shape_b):
        differences = sum(abs(x - y) for x, y in zip(shape_a, shape_b, strict=True))
        score += 0.2 / (1 + differences)
    return min(score, 1.0)


def pair(
    first: Sequence[Post],
    second: Sequence[Post],
    alternates: Alternates | None = None,
    overrides: Overrides = Overrides(),
) -> tuple[list[Pair], list[Post]]:
    """The translation pairs between two languages' posts, and the posts left without one."""
    forced = [
        Pair(a, b, DECISIVE)
        for a in first
        for b in second
        if (a.guid, b.guid) in overrides.forced or (b.guid, a.guid) in overrides.forced
    ]
    taken = {post.guid for p in forced for post in (p.first, p.second)}
    rest_a = [post for post in first if post.guid not in taken]
    rest_b = [post for post in second if post.guid not in taken]
    pairs = forced + _assign(rest_a, rest_b, alternates or {}, overrides.broken)
    paired = {post.guid for p in pairs for post in (p.first, p.second)}
    alone = [post for post in (*first, *second) if post.guid not in paired]
    return pairs, alone


def _assign(
    first: Sequence[Post],
    second: Sequence[Post],
    alternates: Alternates,
    broken: Iterable[tuple[str, str]],
) -> list[Pair]:
    if not first or not second:
        return []
    never = {frozenset(p) for p in broken}
    scores = np.zeros((len(first), len(second)))
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            if frozenset((a.guid, b.guid)) not in never:
                scores[i, j] = confidence(a, b, alternates)
    scores[scores < MIN_CONFIDENCE] = 0.0
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return [
        Pair(first[i], second[j], float(scores[i, j]))
        for i, j in zip(rows, cols, strict=True)
        if scores[i, j] >= MIN_CONFIDENCE
    ]


WINDOW = timedelta(days=21)
CHUNK = 200


def pair_archive(
    first: Sequence[Post],
    second: Sequence[Post],
    alternates: Alternates | None = None,
    overrides: Overrides = Overrides(),
) -> list[Pair]:
    """`pair` for archives of any size: pages that name their translation settle those
    pairs whatever their dates; the rest is assigned in chunks of time, each against the
    other language's posts within three weeks of it."""
    alternates = alternates or {}
    forced, _ = pair(
        [p for p in first if any(p.guid in pair for pair in overrides.forced)],
        [p for p in second if any(p.guid in pair for pair in overrides.forced)],
        alternates,
        Overrides(forced=overrides.forced, broken=frozenset(_everything(overrides.forced))),
    )  # marketing's pairs first, whatever their dates
    pairs = [p for p in forced if p.confidence == DECISIVE]
    taken = {p.first.guid for p in pairs} | {p.second.guid for p in pairs}
    never = {frozenset(p) for p in overrides.broken}
    by_url = {post.url: post for post in second if post.guid not in taken}
    for post in first:
        if post.guid in taken or not second:
            continue
        partner = by_url.get(_declared(post, second[0].lang, alternates) or "")
        if (
            partner is not None
            and frozenset((post.guid, partner.guid)) not in never
            and confidence(post, partner, alternates) == DECISIVE
        ):
            pairs.append(Pair(post, partner, DECISIVE))
            taken |= {post.guid, partner.guid}
    rest_a = sorted((p for p in first if p.guid not in taken), key=lambda p: p.published)
    rest_b = sorted((p for p in second if p.guid not in taken), key=lambda p: p.published)
    for start in range(0, len(rest_a), CHUNK):
        chunk = rest_a[start : start + CHUNK]
        low, high = chunk[0].published - WINDOW, chunk[-1].published + WINDOW
        near = [p for p in rest_b if low <= p.published <= high and p.guid not in taken]
        found, _ = pair(chunk, near, alternates, overrides)
        pairs += found
        taken |= {p.second.guid for p in found}
    return pairs


def _everything(forced: frozenset[tuple[str, str]]) -> set[tuple[str, str]]:
    """Every combination of the forced posts that is not itself forced: only the forced
    pairs may come out of the first pass."""
    guids = {guid for pair in forced for guid in pair}
    return {(a, b) for a in guids for b in guids if a != b and (a, b) not in forced
            and (b, a) not in forced}  # fmt: skip


class _Alternates(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "link":
            return
        values = {name.lower(): value or "" for name, value in attrs}
        rel = values.get("rel", "").lower().split()
        lang = values.get("hreflang", "").lower().split("-")[0]
        href = canonical_url(values.get("href"))
        if "alternate" in rel and lang.isalpha() and len(lang) == 2 and href:
            self.found.setdefault(lang, href)


def alternates_in(page: str) -> dict[str, str]:
    """The `<link rel="alternate" hreflang="…">` of a web page: language → URL."""
    parser = _Alternates()
    head_end = page.lower().find("</head>")
    parser.feed(page[: head_end if head_end >= 0 else 200_000])
    return parser.found

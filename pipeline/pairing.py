"""Pair each post of one language with its translation in the other. Pure: no I/O.

A pair rests on what the two texts say. Decisive when present, the `hreflang` alternate links
of the post pages: a page that names its translation settles it, one that names another post
rules this one out. Otherwise the contents must agree: the markers that survive translation —
numbers, names (capitalised words, acronyms, product names), external links, code and
quotations — and word stems that both languages share (`sécurité`/`security`), counted where
they stand: block by block (paragraphs, list items, headings) when the two posts have the same
structure, as translators keep it, else in the blocks over the same stretch of the text (a
paragraph merged or split, a list made of paragraphs). Two posts on one subject share words,
but not in the same places. That content score has a floor: below it there is no pair,
however strong the rest.
The same featured-image file, close publication times and the same author only support a pair
the content makes: companies reuse stock photos, and one author writes many posts.

The assignment maximises the total confidence over all candidates at once (the Hungarian
algorithm), not greedily, and keeps only pairs above a minimum confidence: a wrong pair is
worse than none. Manual choices (`buzz pair`, `buzz unpair`) override everything.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache
from html.parser import HTMLParser
from itertools import accumulate, groupby, pairwise
from posixpath import basename
from urllib.parse import urlsplit

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.models import PairEvidence, Pairing, Post
from pipeline.text import canonical_url, text_of_clean_html

MIN_CONFIDENCE = 0.5
DECISIVE = 1.0
CONTENT_FLOOR = 0.22  # below: never a pair, whatever the image, the dates and the author
CONTENT_FULL = 0.35  # content agreeing this much pairs on its own
SUPPORT = 0.45  # the most that the image, the dates and the author add, above the floor
_IMAGE_VARIANT = re.compile(r"(?:[-_](?:en|fr|eng|fra|\d+x\d+|scaled|e\d{10,}))+$")
_BLOCK = re.compile(r"<(p|h[2-6]|li|blockquote|pre|td|th|figcaption)\b[^>]*>(.*?)</\1>", re.S)
_WORD = re.compile(r"[^\W\d_][\w’'-]*")
_LETTERS = re.compile(r"[^\W\d_]+")  # words without their elisions: l’infrastructure
_NUMBER = re.compile(r"\d{1,3}(?:[ ,.\u00a0\u202f]\d{3})+(?!\d)|\d+(?:[.,]\d+)?")
_QUOTE = re.compile(r"“([^”]{3,80})”|«\s*([^»]{3,80}?)\s*»|\"([^\"]{3,80})\"")
_CODE = re.compile(r"<code>(.*?)</code>", re.S)
_HREF = re.compile(r'href="([^"]+)"')
_SENTENCE_START = frozenset('.!?:;«»“”"(')
_STEM_WORD, _STEM = 6, 4  # a word of 6+ letters counts by its first 4: optimisation/optimization
_MAX_BLOCKS = 300  # a post's first 300 blocks say enough, and keep the comparison quick
_TIME_SCALE_H = 36.0

Alternates = Mapping[str, Mapping[str, str]]
MARKETING = PairEvidence(basis="marketing")


@dataclass(frozen=True, slots=True)
class Pair:
    """A post and its translation, with how sure the pairing is and why."""

    first: Post
    second: Post
    confidence: float
    evidence: PairEvidence = MARKETING  # a pair made by hand


@dataclass(frozen=True, slots=True)
class Overrides:
    """Marketing's decisions: pairs to force and pairs never to make, as (guid, guid)."""

    forced: frozenset[tuple[str, str]] = frozenset()
    broken: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class _Text:
    """A post's text as pairing compares it: its blocks (paragraphs, list items, headings)
    in order, and the markers each holds, by kind (`n` numbers, `w` names, `l` external links,
    `q` code and quotations, `s` word stems)."""

    tags: tuple[str, ...]
    markers: tuple[frozenset[tuple[str, str]], ...]
    spans: tuple[tuple[float, float], ...]  # where each block lies in the text, from 0 to 1
    where: Mapping[tuple[str, str], tuple[tuple[float, float], ...]]  # marker → its blocks' spans
    size: int  # markers in all blocks
    spelled: Mapping[str, str]  # each name's key → the name as written


def _fold(text: str) -> str:
    """Lower case without accents: `Québec` → `quebec`."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _capitalised(text: str) -> Iterator[tuple[str, str, bool]]:
    """Each capitalised word: its key (`quebec`), as written, and whether it proves to be a
    name where it stands — inside a sentence, or an acronym or CamelCase word anywhere."""
    for match in _WORD.finditer(text):
        word = match.group()
        inner = word[1:] != word[1:].lower()
        key = _fold(word).strip("’'-")
        if not (inner or word[0].isupper()) or len(key) < 2:
            continue
        i = match.start() - 1
        while i >= 0 and text[i].isspace():
            i -= 1
        yield key, word, inner or (i >= 0 and text[i] not in _SENTENCE_START)


def _markers(
    fragment: str, text: str, names: Mapping[str, str], own_site: str
) -> frozenset[tuple[str, str]]:
    digits = (re.sub(r"\D", "", number) for number in _NUMBER.findall(text))
    links = (canonical_url(href) for href in _HREF.findall(fragment))
    quotes = [next(filter(None, groups)) for groups in _QUOTE.findall(text)]
    quotes += [text_of_clean_html(code) for code in _CODE.findall(fragment)]
    return frozenset(
        {("n", number) for number in digits if len(number) > 1}
        | {("w", name) for name in names}
        | {("l", url) for url in links if url and urlsplit(url).netloc != own_site}
        | {("q", " ".join(_fold(quote).split())) for quote in quotes}
        | {("s", word[:_STEM]) for word in _LETTERS.findall(_fold(text)) if len(word) >= _STEM_WORD}
    )


@lru_cache(maxsize=8192)
def _text(post: Post) -> _Text:
    """The post's blocks and markers (its summary as one block when it has no blocks)."""
    own_site = urlsplit(post.url).netloc
    found = _BLOCK.findall(post.content_html)[:_MAX_BLOCKS] or [
        ("p", post.content_html or post.summary)
    ]
    texts = [text_of_clean_html(fragment) for _, fragment in found]
    capitalised = [list(_capitalised(text)) for text in texts]
    common = {_fold(w) for text in texts for w in set(_WORD.findall(text)) if w[0].islower()}
    # a name is a capitalised word that is not a common word written with a capital, seen
    # inside a sentence somewhere in the post: then it is a name at a sentence's start too
    proven = {key for words in capitalised for key, _, inside in words if inside} - common
    spelled: dict[str, str] = {}
    markers = []
    for (_, fragment), text, words in zip(found, texts, capitalised, strict=True):
        names = {key: word for key, word, _ in words if key in proven}
        markers.append(_markers(fragment, text, names, own_site))
        spelled = names | spelled
    ends = [0, *accumulate(max(len(text), 1) for text in texts)]
    spans = tuple((start / ends[-1], end / ends[-1]) for start, end in pairwise(ends))
    where: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for block, span in zip(markers, spans, strict=True):
        for marker in block:
            where.setdefault(marker, []).append(span)
    return _Text(
        tags=tuple(tag for tag, _ in found),
        markers=tuple(markers),
        spans=spans,
        where={marker: tuple(found_at) for marker, found_at in where.items()},
        size=sum(map(len, markers)),
        spelled=spelled,
    )


def _agreement(a: _Text, b: _Text) -> float:
    """How far two texts agree, from 0 to 1: the share of their markers that the other text
    holds in the same place — in the same block when both have the same block structure, else
    in a block over the same stretch of the text (a translator merged or split paragraphs, or
    made a list of them)."""
    if not a.size + b.size:
        return 0.0
    if a.tags == b.tags:
        matched = 2 * sum(len(x & y) for x, y in zip(a.markers, b.markers, strict=True))
    else:
        matched = _found_near(a, b) + _found_near(b, a)
    return matched / (a.size + b.size)


def _found_near(a: _Text, b: _Text) -> int:
    """How many of `a`'s markers `b` holds in a block overlapping the stretch of their own."""
    return sum(
        any(other_start < end and start < other_end for other_start, other_end in b.where[m])
        for (start, end), block in zip(a.spans, a.markers, strict=True)
        for m in block
        if m in b.where
    )


def _structure(tags: Sequence[str]) -> str:
    """`p p li×3 p`: the block tags in order, runs of list items counted."""
    runs = ((tag, len(list(group))) for tag, group in groupby(tags))
    return " ".join(f"{tag}×{n}" if tag == "li" else " ".join([tag] * n) for tag, n in runs)


@lru_cache(maxsize=8192)
def _image_file(image: str | None) -> str | None:
    """The image's file stem without WordPress size or language suffixes
    (`chat-fr-1024x576.jpg` → `chat`): translations often get their own copy."""
    if not image:
        return None
    stem = basename(urlsplit(image).path).lower().rpartition(".")[0]
    return _IMAGE_VARIANT.sub("", stem) or None


def _declared(post: Post, lang: str, alternates: Alternates) -> str | None:
    """The URL that `post`'s page names as its `lang` version, if it names one."""
    declared = alternates.get(post.url, {}).get(lang)
    return canonical_url(declared) if declared else None


def _score(a: Post, b: Post, alternates: Alternates) -> tuple[float, str, float]:
    """The confidence that `b` translates `a`, what it rests on, and the content agreement.

    Without a decisive `hreflang`: (1 − SUPPORT) × min(content / CONTENT_FULL, 1), plus — only
    when the content reaches CONTENT_FLOOR — SUPPORT × the support of image, dates and author.
    Below the floor the most is (1 − SUPPORT) × CONTENT_FLOOR / CONTENT_FULL, under
    MIN_CONFIDENCE: image, dates and author, however strong together, never make a pair.
    """
    content = _agreement(_text(a), _text(b))
    a_says, b_says = _declared(a, b.lang, alternates), _declared(b, a.lang, alternates)
    if a_says == b.url or b_says == a.url:
        return DECISIVE, "hreflang", content
    if a_says or b_says:
        return 0.0, "hreflang", content  # a page names its translation, and it is another post
    score = (1 - SUPPORT) * min(content / CONTENT_FULL, 1.0)
    if content >= CONTENT_FLOOR:  # the rest only supports what the content makes
        score += SUPPORT * (
            0.5 * _same_image(a, b)
            + 0.35 * math.exp(-_hours_apart(a, b) / _TIME_SCALE_H)
            + 0.15 * _same_author(a, b)
        )
    return score, "content", content


def _same_image(a: Post, b: Post) -> bool:
    return _image_file(a.image) is not None and _image_file(a.image) == _image_file(b.image)


def _same_author(a: Post, b: Post) -> bool:
    return bool(a.author) and a.author == b.author


def _hours_apart(a: Post, b: Post) -> float:
    return abs((a.published - b.published).total_seconds()) / 3600


def confidence(a: Post, b: Post, alternates: Alternates | None = None) -> float:
    """How sure we are that `b` translates `a`, from 0 to 1."""
    return _score(a, b, alternates or {})[0]


def assess(a: Post, b: Post, alternates: Alternates | None = None) -> tuple[float, PairEvidence]:
    """`confidence`, and the evidence it rests on."""
    score, basis, content = _score(a, b, alternates or {})
    text_a, text_b = _text(a), _text(b)
    shared = frozenset().union(*text_a.markers) & frozenset().union(*text_b.markers)

    def kind(name: str) -> tuple[str, ...]:
        return tuple(sorted(value for k, value in shared if k == name))

    structure = _structure(text_a.tags)
    return score, PairEvidence(
        basis=basis,
        content=content,
        numbers=kind("n"),
        names=tuple(text_a.spelled[key] for key in kind("w")),
        links=kind("l"),
        quotes=kind("q"),
        stems=len(kind("s")),
        structure=structure if structure == _structure(text_b.tags) else "",
        same_image=_same_image(a, b),
        hours_apart=_hours_apart(a, b),
        same_author=_same_author(a, b),
    )


def pair(
    first: Sequence[Post],
    second: Sequence[Post],
    alternates: Alternates | None = None,
    overrides: Overrides = Overrides(),
) -> tuple[list[Pair], list[Post]]:
    """The translation pairs between two languages' posts, and the posts left without one."""
    forced = [
        Pair(a, b, DECISIVE, replace(assess(a, b)[1], basis="marketing"))
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
        Pair(first[i], second[j], *assess(first[i], second[j], alternates))
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
        if partner is None or frozenset((post.guid, partner.guid)) in never:
            continue
        score, evidence = assess(post, partner, alternates)
        if score == DECISIVE:
            pairs.append(Pair(post, partner, DECISIVE, evidence))
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


_BASES = {
    "hreflang": "the two pages name each other (hreflang)",
    "content": "the two texts agree",
    "marketing": "paired by hand (`buzz pair` or the draft)",
    "unrecorded": "paired before buzz recorded its evidence",
}


def describe(pairing: Pairing) -> list[str]:
    """What made a pair, for a person: its basis and confidence, then (indented) the markers
    the two texts share, their structure, and what supports the pair."""
    e = pairing.evidence
    lines = [f"paired: {_BASES[e.basis]}, confidence {pairing.confidence:.2f}"]
    if e.basis == "unrecorded":
        return lines
    kinds = (("numbers", e.numbers), ("names", e.names), ("links", e.links))
    shared = [f"{label} {', '.join(values)}" for label, values in kinds if values]
    shared += [f"quotations and code {', '.join(e.quotes)}"] if e.quotes else []
    shared += [f"{e.stems} word stems"] if e.stems else []
    lines.append(
        f"  content {e.content:.2f} (a pair needs {CONTENT_FLOOR:.2f}): "
        + ("; ".join(shared) or "nothing shared")
    )
    lines.append(f"  same structure: {e.structure}" if e.structure else "  different structures")
    lines.append(
        "  supporting: "
        + ", ".join(
            (
                "same image" if e.same_image else "different images",
                f"published {e.hours_apart:.0f} h apart",
                "same author" if e.same_author else "different authors",
            )
        )
    )
    return lines

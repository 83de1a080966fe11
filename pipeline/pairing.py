"""Pair each post of one language with its translation in the other.

A first, simple scorer: the same featured-image file, publication times close together, the
same author, and shared numbers and proper nouns. Pairs are taken best first above a minimum
confidence; a wrong pair is worse than none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from posixpath import basename
from urllib.parse import urlsplit

from pipeline.models import Post

MIN_CONFIDENCE = 0.45
_HOURS = 3600.0
_IMAGE_VARIANT = re.compile(r"(?:[-_](?:en|fr|\d+x\d+|scaled))+$")
_MARKERS = re.compile(r"\b(?:\d[\d.,]*|[A-Z][\w-]*[A-Z0-9][\w-]*|[A-Z][a-z]{2,})\b")


def _markers(post: Post) -> set[str]:
    """Numbers and capitalised names: they survive translation."""
    text = f"{post.title} {post.summary}"
    return {token.replace(",", "").replace(".", "") for token in _MARKERS.findall(text)}


def _image_file(post: Post) -> str | None:
    """The image's file stem without WordPress size or language suffixes
    (`chat-fr-1024x576.jpg` → `chat`): translations often get their own copy."""
    if not post.image:
        return None
    stem = basename(urlsplit(post.image).path).lower().rpartition(".")[0]
    return _IMAGE_VARIANT.sub("", stem) or None


def confidence(a: Post, b: Post) -> float:
    """How sure we are that `b` translates `a`, from 0 to 1."""
    score = 0.0
    if _image_file(a) and _image_file(a) == _image_file(b):
        score += 0.45
    hours = abs((a.published - b.published).total_seconds()) / _HOURS
    score += 0.25 * math.exp(-hours / 48)
    if a.author and a.author == b.author:
        score += 0.1
    marks_a, marks_b = _markers(a), _markers(b)
    if marks_a and marks_b:
        score += 0.2 * len(marks_a & marks_b) / len(marks_a | marks_b)
    return min(score, 1.0)


def pair(
    first: Sequence[Post], second: Sequence[Post]
) -> tuple[list[tuple[Post, Post]], list[Post]]:
    """Translation pairs between two languages' posts, and the posts left without one."""
    candidates = sorted(
        ((confidence(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second)),
        reverse=True,
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs: list[tuple[Post, Post]] = []
    for score, i, j in candidates:
        if score < MIN_CONFIDENCE:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((first[i], second[j]))
    alone = [p for i, p in enumerate(first) if i not in used_a]
    alone += [p for j, p in enumerate(second) if j not in used_b]
    return pairs, alone

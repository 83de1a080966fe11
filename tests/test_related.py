"""Tests for pipeline.related on a real store: same subject, same language, no filler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.models import Post
from pipeline.postindex import PostIndex
from pipeline.related import RelatedIndex, analyze
from pipeline.store import Store
from tests.helpers import make_post

NOW = datetime(2026, 11, 26, tzinfo=UTC)
SECURITY, CLOUD, NEWS = ("Security",), ("Cloud",), ("Company News",)


def _post(guid: str, title: str, body: str, categories: tuple[str, ...], days: int = 30) -> Post:
    return make_post(
        guid,
        title=title,
        content_html=f"<p>{body}</p>",
        categories=categories,
        published=NOW - timedelta(days=days),
    )


ARCHIVE = [
    _post(
        "r1",
        "Ransomware attacks on small businesses",
        "Backups, patching and awareness stop ransomware before it encrypts the servers.",
        SECURITY,
    ),
    _post(
        "r2",
        "Restoring from backups after ransomware",
        "Test your backups: a ransomware recovery depends on restores that work.",
        SECURITY,
    ),
    _post(
        "r3",
        "Phishing lures written by AI",
        "Phishing emails now look perfect; ransomware often starts with one click.",
        SECURITY,
    ),
    _post(
        "c1",
        "Cutting the cloud bill",
        "Reserved instances and savings plans cut cloud costs.",
        CLOUD,
    ),
    _post("c2", "Tagging cloud resources", "Tags give every cloud dollar an owner.", CLOUD),
    _post("c3", "Idle cloud resources", "Idle virtual machines inflate the cloud invoice.", CLOUD),
    _post("n1", "Our new office in Montreal", "The team moves downtown in March.", NEWS),
    _post("f1", "Les rançongiciels et les PME", "Les rançongiciels visent les PME.", ("Sécurité",)),
]


def _index(tmp_path: Path, posts: list[Post], lang: str = "en") -> RelatedIndex:
    store = Store(tmp_path / "state.sqlite")
    store.save_posts(posts, set(), NOW)
    index = PostIndex(store)
    index.save_analyses((post, analyze(post)) for post in index.unanalysed())
    return RelatedIndex(index.term_matrix(lang, NOW))


STORY = _post(
    "new", "A new ransomware wave", "This ransomware wave encrypts backups first.", SECURITY, days=0
)


def test_picks_share_the_subject_and_never_include_the_story(tmp_path: Path) -> None:
    """A ransomware story gets ransomware posts, best first; never itself nor a cloud post."""
    picks = _index(tmp_path, [*ARCHIVE, STORY]).pick(STORY, 3, set(), set())
    guids = [pick.guid for pick in picks]
    assert guids[:2] == ["r2", "r1"] or guids[:2] == ["r1", "r2"]
    assert set(guids) <= {"r1", "r2", "r3"}
    assert all(pick.score > 0 for pick in picks)


def test_never_another_language_nor_an_excluded_post(tmp_path: Path) -> None:
    """Other-language posts are in another index; excluded guids are never picked."""
    picks = _index(tmp_path, [*ARCHIVE, STORY]).pick(STORY, 3, {"r1"}, set())
    guids = {pick.guid for pick in picks}
    assert "f1" not in guids
    assert "r1" not in guids


def test_no_filler_when_nothing_is_related(tmp_path: Path) -> None:
    """A story whose subject is absent from the archive gets no related posts at all."""
    story = _post("new", "A marathon for charity", "Runners raised money downtown.", ("Events",), 0)
    assert _index(tmp_path, [*ARCHIVE, story]).pick(story, 3, set(), set()) == []


def test_a_young_archive_yields_nothing(tmp_path: Path) -> None:
    """With fewer than a handful of posts to choose from, no related section."""
    index = _index(tmp_path, [ARCHIVE[0], ARCHIVE[1], STORY])
    assert index.pick(STORY, 3, set(), set()) == []


def test_a_link_between_posts_counts(tmp_path: Path) -> None:
    """A post the story links to gains over an equally similar one."""
    index = _index(tmp_path, [*ARCHIVE, STORY])
    without = {p.guid: p.score for p in index.pick(STORY, 3, set(), set())}
    with_link = {p.guid: p.score for p in index.pick(STORY, 3, set(), {"r1"})}
    assert with_link["r1"] > without["r1"]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_same_archive_same_picks(tmp_path: Path, k: int) -> None:
    """Picks are deterministic, and never more than k."""
    first = _index(tmp_path / "a", [*ARCHIVE, STORY]).pick(STORY, k, set(), set())
    second = _index(tmp_path / "b", [*ARCHIVE, STORY]).pick(STORY, k, set(), set())
    assert first == second
    assert len(first) <= k


def test_analysis_stems_per_language_and_keeps_internal_links() -> None:
    """English and French words are stemmed in their own language; links to the blog kept."""
    fr = make_post(
        "f",
        "fr",
        "Les rançongiciels",
        content_html=(
            '<p>Infonuagique et <a href="https://blog.example.com/fr/autre/">factures</a> '
            '<a href="https://ailleurs.example.org/">ailleurs</a></p>'
        ),
    )
    analysis = analyze(fr)
    assert "rançongiciel" in analysis.terms
    assert "infonuag" in analysis.terms
    assert "les" not in analysis.terms
    assert analysis.links == frozenset({"https://blog.example.com/fr/autre/"})

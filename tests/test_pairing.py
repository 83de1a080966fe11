"""Tests for pipeline.pairing: the translations are found, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.feeds import parse
from pipeline.fetch import Fetched
from pipeline.models import Post
from pipeline.pairing import (
    MIN_CONFIDENCE,
    Overrides,
    alternates_in,
    confidence,
    pair,
    pair_archive,
)
from tests.helpers import ROOT, eval_set, make_post

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _demo(lang: str, name: str) -> list[Post]:
    body = (ROOT / "demo" / "feeds" / name).read_bytes()
    posts, _ = parse(Fetched(body, "application/rss+xml"), name, lang, NOW)
    return posts


def _eval_set() -> tuple[list[Post], list[Post], set[tuple[str, str]]]:
    raw, posts = eval_set()
    truth = {
        (posts[item["translation_of"]].guid, posts[item["id"]].guid)
        for item in raw
        if item["translation_of"]
    }
    english = [post for post in posts.values() if post.lang == "en"]
    french = [post for post in posts.values() if post.lang == "fr"]
    return english, french, truth


def test_demo_translations_are_all_paired_and_the_untranslated_post_is_alone() -> None:
    """All 13 demo pairs are found (two use another image file); the EN-only post stays alone."""
    english = _demo("en", "it-buzz-en.xml")
    french = _demo("fr", "le-buzz-it-fr.xml")
    pairs, alone = pair(english, french)
    found = {(p.first.guid.rsplit("=", 1)[1], p.second.guid.rsplit("=", 1)[1]) for p in pairs}
    assert found == {
        ("4401", "4406"),
        ("4377", "4384"),
        ("4352", "4359"),
        ("4331", "4338"),
        ("4305", "4314"),
        ("4282", "4290"),
        ("4263", "4266"),
        ("4244", "4251"),
        ("4226", "4229"),
        ("4190", "4197"),
        ("4171", "4174"),
        ("4152", "4158"),
        ("4127", "4135"),
    }
    assert [post.guid for post in alone] == ["https://blog.example.com/?p=4213"]


def test_without_any_hreflang_the_evidence_still_pairs_95_percent_and_none_wrong() -> None:
    """On the labelled set with every page's hreflang ignored: ≥ 38 of 40, no wrong pair."""
    english, french, truth = _eval_set()
    pairs, _ = pair(english, french, {})
    found = {(p.first.guid, p.second.guid) for p in pairs}
    assert len(found & truth) >= 38
    assert found <= truth


def test_hreflang_settles_a_pair_and_rules_out_the_others() -> None:
    """A page that names its translation decides; one that names another post excludes."""
    a = make_post("a", "en", "Alpha", published=NOW)
    b = make_post("b", "fr", "Bêta", published=NOW + timedelta(days=30))
    c = make_post("c", "fr", "Alpha", published=NOW, image=None)
    alternates = {a.url: {"fr": b.url}}
    assert confidence(a, b, alternates) == 1.0
    assert confidence(a, c, alternates) == 0.0
    assert [(p.first, p.second) for p in pair_archive([a], [b, c], alternates)] == [(a, b)]


def test_unrelated_posts_published_together_are_not_paired() -> None:
    """Closeness in time alone is not enough evidence."""
    a = make_post("a", "en", "Ransomware in 2026", image="https://b.example/r.jpg", published=NOW)
    b = make_post("b", "fr", "Le Wi-Fi 7 arrive", image="https://b.example/w.jpg", published=NOW)
    assert confidence(a, b) < MIN_CONFIDENCE
    assert pair([a], [b]) == ([], [a, b])


def test_same_image_with_language_or_size_suffix_counts_as_same_image() -> None:
    """`chat-fr-1024x576.jpg` is a copy of `chat.jpg`."""
    a = make_post("a", "en", "Chat 2026", image="https://b.example/2026/11/chat.jpg", published=NOW)
    b = make_post(
        "b",
        "fr",
        "Clavardage 2026",
        image="https://b.example/2026/11/chat-fr-1024x576.jpg",
        published=NOW + timedelta(hours=5),
    )
    assert confidence(a, b) >= MIN_CONFIDENCE


def test_marketing_decisions_override_the_evidence() -> None:
    """A forced pair is made whatever the evidence; a broken one never."""
    english, french, truth = _eval_set()
    a, b = next((x, y) for x in english for y in french if (x.guid, y.guid) in truth)
    stranger = next(y for y in french if y.guid != b.guid)
    pairs, _ = pair([a], [b, stranger], {}, Overrides(broken=frozenset({(a.guid, b.guid)})))
    assert all(p.second != b for p in pairs)
    pairs, _ = pair([a], [b, stranger], {}, Overrides(forced=frozenset({(a.guid, stranger.guid)})))
    assert [(p.first, p.second) for p in pairs] == [(a, stranger)]


def test_alternates_are_read_from_the_page_head() -> None:
    """`<link rel="alternate" hreflang>` in the head, region subtags folded; body links ignored."""
    page = (
        '<html><head><link rel="alternate" hreflang="fr-CA" href="https://blog.example.com/fr/a/#x">'
        '<link rel="alternate" hreflang="en" href="https://blog.example.com/a/">'
        '<link rel="alternate" hreflang="x-default" href="https://blog.example.com/">'
        '<link rel="stylesheet" href="s.css"></head><body>'
        '<link rel="alternate" hreflang="de" href="https://blog.example.com/de/a/"></body></html>'
    )
    assert alternates_in(page) == {
        "fr": "https://blog.example.com/fr/a/",
        "en": "https://blog.example.com/a/",
    }


def test_archives_are_paired_within_time_windows() -> None:
    """A large archive pairs the same as the whole; posts months apart are never compared."""
    english, french, _ = _eval_set()
    whole, _ = pair(english, french, {})
    windowed = pair_archive(english, french, {})
    assert {(p.first.guid, p.second.guid) for p in windowed} == {
        (p.first.guid, p.second.guid) for p in whole
    }


def test_archive_pairing_obeys_marketing_over_hreflang_and_time() -> None:
    """In `pair_archive` too: a broken pair stays broken even when a page names it; a forced
    pair is made even 30 days apart."""
    a = make_post("a", "en", "Alpha", published=NOW)
    b = make_post("b", "fr", "Alpha", published=NOW + timedelta(hours=1))
    far = make_post("z", "fr", "Zêta", published=NOW + timedelta(days=30))
    alternates = {a.url: {"fr": b.url}}
    broken = Overrides(broken=frozenset({(a.guid, b.guid)}))
    assert pair_archive([a], [b], alternates, broken) == []
    forced = Overrides(forced=frozenset({(a.guid, far.guid)}))
    assert [(p.first, p.second) for p in pair_archive([a], [b, far], alternates, forced)] == [
        (a, far)
    ]

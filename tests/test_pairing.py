"""Tests for pipeline.pairing: the demo's translations are found, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.feeds import Fetched, parse
from pipeline.models import Post
from pipeline.pairing import MIN_CONFIDENCE, confidence, pair
from tests.helpers import ROOT, make_post

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _demo(lang: str, name: str) -> list[Post]:
    body = (ROOT / "demo" / "feeds" / name).read_bytes()
    posts, _ = parse(Fetched(body, "application/rss+xml"), name, lang, NOW)
    return posts


def test_demo_translations_are_all_paired_and_the_untranslated_post_is_alone() -> None:
    """All 13 demo pairs are found (two use another image file); the EN-only post stays alone."""
    english = _demo("en", "it-buzz-en.xml")
    french = _demo("fr", "le-buzz-it-fr.xml")
    pairs, alone = pair(english, french)
    found = {(a.guid.rsplit("=", 1)[1], b.guid.rsplit("=", 1)[1]) for a, b in pairs}
    assert found == {
        ("4401", "4406"), ("4377", "4384"), ("4352", "4359"), ("4331", "4338"),
        ("4305", "4314"), ("4282", "4290"), ("4263", "4266"), ("4244", "4251"),
        ("4226", "4229"), ("4190", "4197"), ("4171", "4174"), ("4152", "4158"),
        ("4127", "4135"),
    }  # fmt: skip
    assert [post.guid for post in alone] == ["https://blog.example.com/?p=4213"]


def test_unrelated_posts_published_together_are_not_paired() -> None:
    """Closeness in time alone is not enough evidence."""
    a = make_post("a", "en", "Ransomware in 2026", image="https://b.example/r.jpg")
    b = make_post("b", "fr", "Le Wi-Fi 7 arrive", image="https://b.example/w.jpg")
    assert confidence(a, b) < MIN_CONFIDENCE
    assert pair([a], [b]) == ([], [a, b])


def test_same_image_with_language_or_size_suffix_counts_as_same_image() -> None:
    """`chat-fr-1024x576.jpg` is a copy of `chat.jpg`."""
    start = datetime(2026, 11, 24, tzinfo=UTC)
    a = make_post("a", "en", "Chat", image="https://b.example/2026/11/chat.jpg", published=start)
    b = make_post(
        "b",
        "fr",
        "Clavardage",
        image="https://b.example/2026/11/chat-fr-1024x576.jpg",
        published=start + timedelta(hours=5),
    )
    assert confidence(a, b) >= MIN_CONFIDENCE

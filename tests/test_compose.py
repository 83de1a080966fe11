"""Tests for pipeline.compose: pairs become stories, translations wait, related stay outside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.compose import compose
from pipeline.config import EditionSection
from tests.helpers import make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
IMG = "https://blog.example.com/wp-content/uploads/2026/11/{}.jpg"


def _pair(n: int, hours_ago: float) -> tuple:  # type: ignore[type-arg]
    when = NOW - timedelta(hours=hours_ago)
    en = make_post(
        f"en{n}",
        "en",
        f"Story {n} about ransomware",
        image=IMG.format(n),
        published=when,
        categories=("Security",),
    )
    fr = make_post(
        f"fr{n}",
        "fr",
        f"Histoire {n} sur les rançongiciels",
        image=IMG.format(n),
        published=when + timedelta(hours=2),
        categories=("Sécurité",),
    )
    return en, fr  # fmt: skip


def test_translation_pairs_become_one_story_each_newest_first() -> None:
    """Each EN post and its FR translation form one story."""
    (en1, fr1), (en2, fr2) = _pair(1, 100), _pair(2, 50)
    edition = compose("e", ("en", "fr"), {"en": [en1, en2], "fr": [fr1, fr2]},
                      {"en": [], "fr": []}, NOW, EditionSection())  # fmt: skip
    assert edition is not None
    assert [story.posts for story in edition.stories] == [
        {"en": en2, "fr": fr2},
        {"en": en1, "fr": fr1},
    ]


def test_a_post_waits_for_its_translation_then_goes_alone() -> None:
    """Within the grace period an untranslated post waits; after it, it goes alone."""
    en, _ = _pair(1, 10)
    waiting = compose("e", ("en", "fr"), {"en": [en], "fr": []}, {"en": [], "fr": []}, NOW,
                      EditionSection(translation_grace_hours=48))  # fmt: skip
    assert waiting is None
    alone = compose("e", ("en", "fr"), {"en": [en], "fr": []}, {"en": [], "fr": []}, NOW,
                    EditionSection(translation_grace_hours=5))  # fmt: skip
    assert alone is not None
    assert alone.stories_in("en")
    assert not alone.stories_in("fr")


def test_max_stories_keeps_the_newest() -> None:
    """Only the newest max_stories stories go; the others stay for the next edition."""
    pairs = [_pair(n, 60 + n) for n in range(5)]
    edition = compose("e", ("en", "fr"), {"en": [p[0] for p in pairs], "fr": [p[1] for p in pairs]},
                      {"en": [], "fr": []}, NOW, EditionSection(max_stories=2))  # fmt: skip
    assert edition is not None
    assert [story.posts["en"].guid for story in edition.stories] == ["en0", "en1"]


def test_related_posts_never_come_from_the_same_edition() -> None:
    """Two stories on one subject do not list each other as related."""
    (en1, fr1), (en2, fr2) = _pair(1, 100), _pair(2, 50)
    archive = {"en": [en1, en2], "fr": [fr1, fr2]}
    edition = compose("e", ("en", "fr"), archive, archive, NOW, EditionSection())
    assert edition is not None
    assert all(not picks for story in edition.stories for picks in story.related.values())


def test_nothing_new_is_no_edition() -> None:
    """No unsent posts: no edition."""
    assert compose("e", ("en",), {"en": []}, {"en": []}, NOW, EditionSection()) is None


def test_a_single_language_newsletter_does_not_wait_for_translations() -> None:
    """With one language there is nothing to wait for."""
    en, _ = _pair(1, 1)
    edition = compose("e", ("en",), {"en": [en]}, {"en": []}, NOW, EditionSection())
    assert edition is not None
    assert edition.stories_in("en")

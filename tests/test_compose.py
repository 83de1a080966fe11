"""Tests for pipeline.compose: pairs become stories, translations wait, the edition stays out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.compose import compose, stories_from
from pipeline.config import EditionSection
from pipeline.models import Post, Related, Story
from tests.helpers import make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _pair(n: int, hours_ago: float) -> tuple[Post, Post]:
    when = NOW - timedelta(hours=hours_ago)
    en = make_post(f"en{n}", "en", f"Story {n}", published=when)
    fr = make_post(f"fr{n}", "fr", f"Histoire {n}", published=when + timedelta(hours=2))
    return en, fr


def _translations(*pairs: tuple[Post, Post]) -> dict[str, str]:
    both = {a.guid: b.guid for a, b in pairs}
    return both | {b: a for a, b in both.items()}


def _none(story: Story, keep_out: frozenset[str]) -> dict[str, tuple[Related, ...]]:
    return {}


def test_translation_pairs_become_one_story_each_newest_first() -> None:
    """Each EN post and its FR translation form one story."""
    (en1, fr1), (en2, fr2) = _pair(1, 100), _pair(2, 50)
    stories = stories_from(
        ("en", "fr"),
        {"en": [en1, en2], "fr": [fr1, fr2]},
        _translations((en1, fr1), (en2, fr2)),
        NOW,
        timedelta(hours=48),
    )
    assert [story.posts for story in stories] == [{"en": en2, "fr": fr2}, {"en": en1, "fr": fr1}]


def test_a_post_waits_for_its_translation_then_goes_alone() -> None:
    """Within the grace period an untranslated post waits; after it, it goes alone."""
    en, _ = _pair(1, 10)
    unsent = {"en": [en], "fr": []}
    assert stories_from(("en", "fr"), unsent, {}, NOW, timedelta(hours=48)) == []
    [alone] = stories_from(("en", "fr"), unsent, {}, NOW, timedelta(hours=5))
    assert alone.posts == {"en": en}


def test_a_post_whose_translation_already_went_out_goes_at_once() -> None:
    """The FR translation of an EN post sent last week does not wait: FR readers get it now."""
    en, fr = _pair(1, 2)
    [story] = stories_from(
        ("en", "fr"), {"en": [], "fr": [fr]}, _translations((en, fr)), NOW, timedelta(hours=48)
    )
    assert story.posts == {"fr": fr}


def test_a_single_language_newsletter_does_not_wait_for_translations() -> None:
    """With one language there is nothing to wait for."""
    en, _ = _pair(1, 1)
    assert stories_from(("en",), {"en": [en]}, {}, NOW, timedelta(hours=48))


def test_max_stories_keeps_the_newest() -> None:
    """Only the newest max_stories stories go; the others stay for the next edition."""
    pairs = [_pair(n, 60 + n) for n in range(5)]
    edition = compose(
        "e",
        ("en", "fr"),
        {"en": [p[0] for p in pairs], "fr": [p[1] for p in pairs]},
        _translations(*pairs),
        _none,
        NOW,
        EditionSection(max_stories=2),
    )
    assert edition is not None
    assert [story.posts["en"].guid for story in edition.stories] == ["en0", "en1"]


def test_related_are_asked_to_keep_the_edition_out() -> None:
    """The related finder is told every post of the edition, translations included."""
    (en1, fr1), (en2, fr2) = _pair(1, 100), _pair(2, 50)
    seen: list[frozenset[str]] = []

    def finder(story: Story, keep_out: frozenset[str]) -> dict[str, tuple[Related, ...]]:
        seen.append(keep_out)
        return {}

    for settings in (EditionSection(), EditionSection(related_from_same_edition=True)):
        compose("e", ("en", "fr"), {"en": [en1, en2], "fr": [fr1, fr2]},
                _translations((en1, fr1), (en2, fr2)), finder, NOW, settings)  # fmt: skip
    assert seen == [frozenset({"en1", "fr1", "en2", "fr2"})] * 2 + [frozenset()] * 2


def test_nothing_new_is_no_edition() -> None:
    """No unsent posts: no edition."""
    assert compose("e", ("en",), {"en": []}, {}, _none, NOW, EditionSection()) is None

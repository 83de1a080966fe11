"""Tests for pipeline.render: real MJML rendering of both languages, safe personalisation."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime

import pytest

from pipeline.models import Edition, Related, Story
from pipeline.render import TEMPLATES_DIR, Sender, render
from tests.helpers import make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SENDER = Sender("Example Inc.", "123 Example St, Toronto ON", "https://example.com/contact")


def _edition(
    title_en: str = "Ransomware & you", title_fr: str = "Les rançongiciels et vous"
) -> Edition:
    en = make_post("en1", "en", title_en, image="https://blog.example.com/i.jpg")
    fr = make_post("fr1", "fr", title_fr, image="https://blog.example.com/i.jpg")
    related = make_post("en0", "en", "Older post on backups")
    story = Story({"en": en, "fr": fr}, {"en": (Related(related, 0.3),), "fr": ()})
    return Edition("2026-11-26", NOW, ("en", "fr"), (story,))


def test_string_catalogs_have_the_same_keys() -> None:
    """Every interface word exists in both languages."""
    keys = [
        set(tomllib.loads((TEMPLATES_DIR / "strings" / f"{lang}.toml").read_text()))
        for lang in ("en", "fr")
    ]
    assert keys[0] == keys[1]


@pytest.mark.parametrize(
    ("lang", "expected", "foreign"),
    [
        ("en", ["Read more", "Related", "Unsubscribe", "November 20, 2026"], ["Lire la suite"]),
        (
            "fr",
            ["Lire la suite", "Se désabonner", "20 novembre 2026"],
            ["Read more", "Unsubscribe"],
        ),
    ],
)
def test_each_language_speaks_only_its_own_words(
    lang: str, expected: list[str], foreign: list[str]
) -> None:
    """The HTML and text parts use the language's catalog and date format, and set `lang`."""
    rendered = render(_edition(), lang, "IT Buzz" if lang == "en" else "Le buzz IT", SENDER)
    assert f'lang="{lang}-CA"' in rendered.html
    for word in expected:
        assert word in rendered.html
        assert word in rendered.text
    for word in foreign:
        assert word not in rendered.html
        assert word not in rendered.text


def test_french_subject_has_a_non_breaking_space_before_the_colon() -> None:
    """French typography: "Le buzz IT : …" with U+00A0."""
    rendered = render(_edition(), "fr", "Le buzz IT", SENDER)
    assert rendered.subject == "Le buzz IT\u00a0: Les rançongiciels et vous"


def test_feed_text_is_escaped_and_cannot_forge_a_placeholder() -> None:
    """Markup in a title is shown as text; a title that looks like a placeholder stays as is."""
    hostile = "<script>alert(1)</script> https://buzz.invalid/0000000000000000/unsubscribe"
    rendered = render(_edition(title_en=hostile), "en", "IT Buzz", SENDER)
    assert "<script>alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    html_part, text_part = rendered.personalize({"unsubscribe_url": "https://u.example/?t=a&b"})
    assert "https://u.example/?t=a&amp;b" in html_part
    assert "https://u.example/?t=a&b" in text_part
    assert "https://buzz.invalid/0000000000000000/unsubscribe" in html_part
    assert html_part.count("https://u.example/?t=a&amp;b") == 1


def test_no_third_party_resource_is_loaded() -> None:
    """No web font host and no hot-linked icon: only the blog's own images."""
    rendered = render(_edition(), "en", "IT Buzz", SENDER)
    sources = re.findall(r'(?:src|href)="(https?://[^/"]+)', rendered.html)
    hosts = {re.sub(r"https?://", "", s) for s in sources}
    assert "fonts.googleapis.com" not in rendered.html
    assert hosts <= {"blog.example.com", "example.com", "buzz.invalid"}


def test_preview_page_escapes_feed_text() -> None:
    """Markup in a subject (from a feed title) is text in the preview page too."""
    from pipeline.render import render_preview

    hostile = "Patch now <img src=x onerror=alert(1)>"
    rendered = {"en": render(_edition(title_en=hostile), "en", "IT Buzz", SENDER)}
    page = render_preview("2026-11-26", rendered)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'src="en.html"' in page


def test_blog_links_carry_utm_parameters_without_overwriting() -> None:
    """utm_source/medium/campaign/content on every blog link; a parameter already there stays."""
    edition = _edition()
    rendered = render(edition, "en", "IT Buzz", SENDER, utm_source="it-buzz-en")
    assert (
        "https://blog.example.com/en/en1/?utm_source=it-buzz-en&amp;utm_medium=email"
        "&amp;utm_campaign=2026-11-26&amp;utm_content=story-1"
    ) in rendered.html
    assert "utm_content=story-1-related-1" in rendered.text
    assert "utm_" not in render(edition, "en", "IT Buzz", SENDER).text
    from pipeline.text import with_utm

    kept = with_utm("https://b.example/p/?utm_source=rss&x=1", "it-buzz-en", "e", "story-2")
    assert kept == (
        "https://b.example/p/?utm_source=rss&x=1&utm_medium=email&utm_campaign=e"
        "&utm_content=story-2"
    )


def test_french_feed_text_gets_french_spacing() -> None:
    """A French title from a feed gets no-break spaces before : and ? (times untouched)."""
    rendered = render(
        _edition(title_fr="Sécurité: quoi de neuf à 10:00?"), "fr", "Le buzz IT", SENDER
    )
    assert "Sécurité\u00a0: quoi de neuf à 10:00\u00a0?" in rendered.text
    english = render(_edition(title_en="Security: what's new?"), "en", "IT Buzz", SENDER)
    assert "Security: what's new?" in english.text


def test_a_ten_story_edition_stays_far_from_gmail_clipping() -> None:
    """10 stories with long titles, images, 3 related each and UTM links: HTML under 90 KB."""
    stories = []
    for n in range(10):
        post = make_post(
            f"p{n}",
            "en",
            f"A long story title about cloud costs and ransomware {n}" * 2,
            summary="A summary sentence of reasonable length. " * 8,
            image=f"https://blog.example.com/wp-content/uploads/2026/11/image-{n}.jpg",
        )
        related = tuple(Related(make_post(f"r{n}{k}", "en", f"An older related post {k}" * 3), 0.3)
                        for k in range(3))  # fmt: skip
        stories.append(Story({"en": post}, {"en": related}))
    edition = Edition("2026-11-26", NOW, ("en",), tuple(stories))
    rendered = render(edition, "en", "IT Buzz", SENDER, utm_source="it-buzz-en")
    assert len(rendered.html.encode()) < 90_000


def test_logo_preferences_link_and_configured_subject() -> None:
    """A configured logo (with alt text), preferences link and subject pattern appear."""
    sender = Sender("Example Inc.", "123 Example St", "https://example.com/contact",
                    logo_url="https://blog.example.com/logo.png",
                    preferences_url="https://example.com/prefs")  # fmt: skip
    rendered = render(_edition(), "fr", "Le buzz IT", sender, subject_pattern="{title} — {name}")
    assert re.search(r'<img class="buzz-logo" src="https://blog.example.com/logo.png" '
                     r'alt="Example Inc\."', rendered.html)  # fmt: skip
    assert "Gérer mes préférences" in rendered.html
    assert "Gérer mes préférences\u00a0: https://example.com/prefs" in rendered.text
    assert rendered.subject == "Les rançongiciels et vous — Le buzz IT"


def test_french_no_break_spaces_in_attributes_are_character_references() -> None:
    """mjml-python prints a no-break space in an attribute as a literal \\u{a0}: buzz turns it
    into &#xa0;, so the "Read more" name keeps French typography."""
    rendered = render(_edition(title_fr="Sécurité : quoi de neuf ?"), "fr", "Le buzz IT", SENDER)
    assert "\\u{" not in rendered.html
    assert 'aria-label="Lire la suite&#xa0;: Sécurité&#xa0;: quoi de neuf&#xa0;?"' in rendered.html


def test_preheader_follows_its_pattern() -> None:
    """{summary} and {titles} fill the preheader; the default lists the other titles."""
    rendered = render(_edition(), "en", "IT Buzz", SENDER, preheader_pattern="New: {summary}")
    assert rendered.preheader == "New: Ransomware & you"
    assert "New: Ransomware &amp; you" in rendered.html

"""Accessibility of the demo's rendered newsletters: headings, link names, decorative images,
text sizes, dark-mode declarations, and WCAG contrast of every visible text measured by
headless Chromium in light mode, dark mode and Outlook.com's dark mode."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from pipeline import screenshots
from tests.test_quality import _tool, edition  # noqa: F401 - the demo edition, built once

LANGS = ("en", "fr")


def _luminance(rgb: str) -> float:
    """WCAG 2.x relative luminance of a CSS `rgb(…)` / `rgba(…)` colour."""
    channels = [int(c) / 255 for c in re.findall(r"[\d.]+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS colours (1 to 21)."""
    high, low = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_formula_matches_wcag() -> None:
    """Black on white is 21:1, white on white 1:1, #767676 on white the AA edge, 4.54:1."""
    assert round(contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)"), 2) == 21
    assert contrast("rgb(255, 255, 255)", "rgb(255, 255, 255)") == 1
    assert round(contrast("rgb(118, 118, 118)", "rgb(255, 255, 255)"), 2) == 4.54


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("scheme", ["light", "dark", "outlook-dark"])
def test_every_text_has_aa_contrast_and_at_least_13px(
    edition: Path,  # noqa: F811
    lang: str,
    scheme: screenshots.Scheme,
) -> None:
    """Every visible text, the logo's alt text included (images blocked: the demo's are not
    reachable), is at least 4.5:1 against what is behind it, and 13 px or larger."""
    _tool("chromium")
    layout = screenshots.measure(edition, lang, 375, scheme)
    assert len(layout.texts) > 20
    assert any(t["tag"] == "IMG" for t in layout.texts), "the logo's alt text is shown"
    weak = [
        (
            t["text"][:40],
            t["color"],
            t["background"],
            round(contrast(t["color"], t["background"]), 2),
        )
        for t in layout.texts
        if contrast(t["color"], t["background"]) < 4.5
    ]
    assert weak == []
    assert [t["text"][:40] for t in layout.texts if t["size"] < 13] == []


def test_dark_mode_changes_the_colours(edition: Path) -> None:  # noqa: F811
    """Dark mode is honoured: the cards and the body text are not the light ones."""
    _tool("chromium")
    light = screenshots.measure(edition, "en", 600, "light").texts
    for scheme in ("dark", "outlook-dark"):
        dark = screenshots.measure(edition, "en", 600, scheme).texts  # type: ignore[arg-type]
        assert [t["text"] for t in dark] == [t["text"] for t in light]
        changed = [
            a for a, b in zip(light, dark, strict=True) if a["background"] != b["background"]
        ]
        assert len(changed) > len(light) // 2, scheme


@pytest.mark.parametrize("lang", LANGS)
def test_dark_mode_is_declared_for_every_client_that_reads_it(
    edition: Path,  # noqa: F811
    lang: str,
) -> None:
    """color-scheme and supported-color-schemes (meta and CSS), a prefers-color-scheme block,
    and the same rules again for Outlook.com's [data-ogsc] / [data-ogsb]."""
    page = (edition / f"{lang}.html").read_text()
    assert '<meta name="color-scheme" content="light dark"' in page
    assert '<meta name="supported-color-schemes" content="light dark"' in page
    assert re.search(
        r":root\s*\{\s*color-scheme: light dark; supported-color-schemes: light dark;", page
    )
    block = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\s*\}\n", page, re.S)
    assert block is not None
    media = re.findall(r"(\S[^{}]*?) \{ ([\w-]+): (#\w+) !important; \}", block[1])
    outlook = re.findall(
        r"\[(data-og[sc][cb])\] ([^{}]+?) \{ ([\w-]+): (#\w+) !important; \}", page
    )
    assert len(media) > 10
    assert [(s, p, v) for _, s, p, v in outlook] == media
    assert all((a == "data-ogsb") == p.startswith("background") for a, _, p, _ in outlook)


@pytest.mark.parametrize("lang", LANGS)
def test_headings_name_the_newsletter_the_stories_and_the_related_lists(
    edition: Path,  # noqa: F811
    lang: str,
) -> None:
    """One h1 (the newsletter's name), an h2 per story holding its link, an h3 per related
    list; their margins reset, so the layout does not move."""
    page = (edition / f"{lang}.html").read_text()
    h1 = re.findall(r"<h1\b[^>]*>(.*?)</h1>", page)
    h2 = re.findall(r"<h2\b[^>]*><a\b[^>]*>(.*?)</a></h2>", page)
    assert h1 == ["IT Buzz" if lang == "en" else "Le buzz IT"]
    assert len(h2) == 4
    assert len(re.findall(r"<h3\b", page)) >= 1
    assert all("margin:0;" in tag for tag in re.findall(r"<h[123]\b[^>]*>", page))


@pytest.mark.parametrize("lang", LANGS)
def test_each_read_more_says_which_story_and_images_do_not_repeat_titles(
    edition: Path,  # noqa: F811
    lang: str,
) -> None:
    """Every "Read more" link's aria-label starts with its visible words and names its story;
    story images are decorative (alt="") and are not links, the logo's alt is the company."""
    page = (edition / f"{lang}.html").read_text()
    words = "Read more" if lang == "en" else "Lire la suite"
    buttons = re.findall(r'<a class="buzz-more"[^>]*aria-label="([^"]*)"[^>]*>([^<]*)</a>', page)
    titles = re.findall(r"<h2\b[^>]*><a\b[^>]*>(.*?)</a></h2>", page)
    assert [text for _, text in buttons] == [words] * len(titles)
    separator = "\u00a0: " if lang == "fr" else ": "
    assert [html.unescape(label) for label, _ in buttons] == [
        f"{words}{separator}{html.unescape(title)}" for title in titles
    ]
    images = re.findall(r"<img\b[^>]*>", page)
    assert [re.search(r'alt="([^"]*)"', i)[1] for i in images] == ["Example Inc."] + [""] * 4  # type: ignore[index]
    assert not re.search(r"<a\b[^>]*>\s*<img", page), "a linked image"

"""Render an edition: Jinja2 → MJML → HTML, and a text part from its own template. Pure.

Rendering happens once per edition and language. What differs per recipient (the unsubscribe
link) is left as a placeholder holding a random nonce, so that no text from a feed can ever
forge one, and filled in by `Rendered.personalize` — a cheap substitution.
"""

from __future__ import annotations

import html
import re
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import mjml
from babel.dates import format_date

from pipeline import patterns
from pipeline.models import Edition, Story
from pipeline.text import TYPOGRAPHY, collapse_spaces, shorten, with_utm

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SUBJECT_LIMIT = 150
_RUST_ESCAPE = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}")
PREHEADER_LIMIT = 140


@dataclass(frozen=True, slots=True)
class Sender:
    """Who the newsletter is from, as the footer must say it (CASL)."""

    company: str
    postal_address: str
    contact_url: str
    logo_url: str = ""
    preferences_url: str = ""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One language of an edition, rendered, with its per-recipient placeholders."""

    lang: str
    edition_id: str
    subject: str
    preheader: str
    html: str
    text: str
    placeholders: dict[str, str]
    mjml_source: str = ""  # what mjml-python compiled (kept for validation and benchmarks)

    def personalize(self, values: dict[str, str]) -> tuple[str, str]:
        """The HTML and text parts for one recipient: each placeholder replaced by its value
        (HTML-escaped in the HTML part)."""
        html_part, text_part = self.html, self.text
        for key, marker in self.placeholders.items():
            html_part = html_part.replace(marker, html.escape(values[key], quote=True))
            text_part = text_part.replace(marker, values[key])
        return html_part, text_part


@cache
def strings(lang: str) -> dict[str, str]:
    """The interface words of `lang` (templates/strings/<lang>.toml)."""
    with (TEMPLATES_DIR / "strings" / f"{lang}.toml").open("rb") as handle:
        return tomllib.load(handle)


@cache
def _environment() -> jinja2.Environment:
    """MJML and HTML templates (`*.mjml.j2`, `*.html.j2`) are HTML-escaped; the text part
    (`*.txt.j2`) is not."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2"), default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _story_view(
    story: Story,
    lang: str,
    locale: str,
    links: Callable[[str, str], str],
    typography: Callable[[str], str],
) -> dict[str, Any]:
    post = story.posts[lang]
    return {
        "title": typography(post.title),
        "url": links(post.url, ""),
        "image": post.image,
        "summary": typography(post.summary),
        "date": format_date(post.published, format="long", locale=locale),
        "related": [
            {"title": typography(r.post.title), "url": links(r.post.url, f"-related-{n}")}
            for n, r in enumerate(story.related.get(lang, ()), start=1)
        ],
    }


def render(
    edition: Edition,
    lang: str,
    name: str,
    sender: Sender,
    utm_source: str | None = None,
    subject_pattern: str = "",
    preheader_pattern: str = "",
) -> Rendered:
    """Render `lang` of `edition` (which must have a story in that language). With
    `utm_source`, links to the blog carry UTM parameters (campaign: the edition; content: the
    link's place). The subject: the draft's pattern, else `subject_pattern`, else the
    catalog's ({name} and {title} filled in). The preheader: `preheader_pattern`, with
    {titles} (the other stories' titles) and {summary} (the first story's), else {titles}."""
    words = strings(lang)
    locale = words["locale"]
    typeset = TYPOGRAPHY[words["typography"]]  # every text below goes through it, once
    stories = [
        _story_view(story, lang, locale, _links(utm_source, edition.id, position), typeset)
        for position, story in enumerate(edition.stories_in(lang), start=1)
    ]
    filled = {
        key: typeset(value.format(name=name, company=sender.company, title="{title}"))
        for key, value in words.items()
    }
    pattern = edition.subjects.get(lang) or subject_pattern or words["subject"]
    subject = patterns.fill(pattern, {"name": name, "title": stories[0]["title"]})
    subject = shorten(collapse_spaces(typeset(subject)), SUBJECT_LIMIT)  # text, not HTML: keep "<"
    others = " · ".join(story["title"] for story in stories[1:]) or stories[0]["summary"]
    preheader = patterns.fill(
        preheader_pattern or "{titles}", {"titles": others, "summary": stories[0]["summary"]}
    )
    preheader = shorten(collapse_spaces(typeset(preheader)), PREHEADER_LIMIT)
    nonce = secrets.token_hex(8)
    placeholders = {"unsubscribe_url": f"https://buzz.invalid/{nonce}/unsubscribe"}
    context = {
        "t": filled,
        "name": typeset(name),
        "locale_tag": locale.replace("_", "-"),
        "subject": subject,
        "preheader": preheader,
        "edition_date": format_date(edition.created_at, format="long", locale=locale),
        "stories": stories,
        "intro": typeset(edition.intros.get(lang, "")),
        "company": typeset(sender.company),
        "postal_address": typeset(sender.postal_address),
        "contact_url": sender.contact_url,
        "logo_url": sender.logo_url,
        "preferences_url": sender.preferences_url,
        **placeholders,
    }
    source = _environment().get_template("newsletter.mjml.j2").render(context)
    html_part = mjml.mjml2html(source, disable_comments=True, fonts={})
    # mjml-python writes some characters inside attributes as Rust escapes ("\u{a0}")
    html_part = _RUST_ESCAPE.sub(lambda m: f"&#x{m[1]};", html_part)
    # the text part's own punctuation ("Lire la suite: URL") is typeset with the rest
    text_part = typeset(_environment().get_template("newsletter.txt.j2").render(context))
    return Rendered(
        lang, edition.id, subject, preheader, html_part, text_part, placeholders, source
    )


def _links(source: str | None, campaign: str, position: int) -> Callable[[str, str], str]:
    if source is None:
        return lambda url, _: url
    return lambda url, place: with_utm(url, source, campaign, f"story-{position}{place}")


def render_preview(edition_id: str, rendered: dict[str, Rendered]) -> str:
    """The marketing preview page: every language side by side, at desktop and phone widths,
    with its subject and preheader (`<lang>.html` beside it in the edition folder)."""
    template = _environment().get_template("preview.html.j2")
    return template.render(edition_id=edition_id, rendered=rendered)

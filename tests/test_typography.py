"""Tests for the typography of every text buzz emits: French no-break spaces (pipeline.text
`french_spacing`, applied by pipeline.render to the whole French edition) and cuts that never
stop at an abbreviation (`shorten`)."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from pipeline.message import ListOptions, MessageTemplate
from pipeline.models import Edition, Recipient, Related, Story
from pipeline.render import render
from pipeline.text import french_spacing, shorten
from tests.helpers import make_post
from tests.test_render import NOW, SENDER

NBSP, NNBSP = "\u00a0", "\u202f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bonjour!", "Bonjour\u00a0!"),
        ("Quoi de neuf ? Tout; enfin: rien", "Quoi de neuf\u00a0? Tout\u00a0; enfin\u00a0: rien"),
        ("«Bonjour» et « salut »", "«\u00a0Bonjour\u00a0» et «\u00a0salut\u00a0»"),
        ("10% de 2 Go, 5km et 10$", "10\u00a0% de 2\u00a0Go, 5\u00a0km et 10\u00a0$"),
        ("Déjà\u202f? Oui", "Déjà\u202f? Oui"),  # a narrow no-break space already there stays
    ],
)
def test_french_spacing_puts_no_break_spaces_where_french_wants_them(
    text: str, expected: str
) -> None:
    """Before : ; ! ? % $ and units after a number, inside « »; what is right stays."""
    assert french_spacing(text) == expected
    assert french_spacing(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "à 10:30",
        "https://blog.example.com/a?b=1&c=d:e",
        "écrivez à jean@example.com",
        "le code `a ? b : c`",
        "COVID-19 s'étend",
    ],
)
def test_french_spacing_leaves_times_urls_addresses_and_code_alone(text: str) -> None:
    """Nothing changes in a time, a URL, an e-mail address or `code`."""
    assert french_spacing(text) == text


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("Cloud costs vs. on-premise servers: which one wins for small teams", 24,
         "Cloud costs…"),
        ("Tools, e.g. linters and formatters, make reviews faster for everyone", 20,
         "Tools…"),
        ("Une entrevue avec M. Tremblay sur la sécurité des postes de travail", 30,
         "Une entrevue avec…"),
        ("Des outils, p. ex. des gestionnaires de mots de passe, pour tous", 22,
         "Des outils…"),
        ("Example Inc. wins an award. The team is proud of this and of more", 40,
         "Example Inc. wins an award."),
        ("We met at Example Inc. at last. Then AWS vs. Azure took the whole afternoon", 50,
         "We met at Example Inc. at last."),
    ],
)  # fmt: skip
def test_shorten_never_stops_at_an_abbreviation(text: str, limit: int, expected: str) -> None:
    """Neither the sentence cut nor the word cut ends just after "vs.", "e.g.", "M.", "p. ex."
    or "Inc."."""
    assert shorten(text, limit) == expected


def test_shorten_does_not_take_an_abbreviation_for_a_sentence_end() -> None:
    """ "Inc." in the second half is not where a sentence ends: the cut goes to a word."""
    text = "The yearly review of security at Example Inc. and what it found in every team"
    assert shorten(text, 60) == "The yearly review of security at Example Inc. and what it…"


class _Strings(HTMLParser):
    """Every text node and every alt, aria-label and title attribute of an HTML page, outside
    <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        self.found += [v for k, v in attrs if k in ("alt", "aria-label", "title") and v]

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style and data.strip():
            self.found.append(data)


_URL = re.compile(r"\b(?:https?|mailto):\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_FRENCH_FAULTS = (
    re.compile(
        r"(?<=[\w»)\]%$€])(?:[ ]|)[:;!?](?=\s|$)"
    ),  # before : ; ! ?: no space, or a plain one
    re.compile(r"«(?![\u00a0\u202f])"),
    re.compile(r"(?<![\u00a0\u202f])»"),
    re.compile(r"\d ?(?:%|\$|€|Go|Mo|km)(?!\w)"),
)


def _faults(text: str) -> list[str]:
    text = _URL.sub("URL", text)
    return [match.group(0) for rule in _FRENCH_FAULTS for match in rule.finditer(text)]


def test_every_french_string_of_an_edition_follows_french_typography() -> None:
    """Marketing's subject and intro, the catalog, the feed's text, the text part's labels,
    the preheader, alt and aria-label attributes: no French text breaks the rules."""
    post = make_post("fr1", "fr", "Sécurité: quoi de neuf?", summary="Un gain de 30% «vite»!",
                     image="https://blog.example.com/i.jpg")  # fmt: skip
    second = make_post("fr2", "fr", "Le nuage: 10 Go pour 5$?", summary="Enfin; oui!")
    related = make_post("fr0", "fr", "Sauvegardes: le guide!")
    edition = Edition(
        "2026-11-26", NOW, ("fr",),
        (Story({"fr": post}, {"fr": (Related(related, 0.3),)}), Story({"fr": second})),
    )  # fmt: skip
    edition = replace(edition, subjects={"fr": "Bonjour! {title}"},
                      intros={"fr": "Bonjour! Voici «les» nouvelles: 3 sujets."})  # fmt: skip
    rendered = render(edition, "fr", "Le buzz IT", SENDER, preheader_pattern="À lire: {titles}")
    template = MessageTemplate(
        rendered, "Le buzz IT <buzz@news.example.com>", ListOptions("Le buzz IT <fr.example>")
    )
    raw = template.for_recipient(Recipient("a@example.com", "fr"), "https://u.example/?t=1", NOW)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parser = _Strings()
    parser.feed(rendered.html)
    strings = [*parser.found, rendered.text, str(message["Subject"]), rendered.preheader]
    assert "Bonjour\u00a0! Sécurité\u00a0: quoi de neuf\u00a0?" in str(message["Subject"])
    assert "Lire la suite\u00a0: https://" in rendered.text
    assert "Bonjour\u00a0! Voici «\u00a0les\u00a0» nouvelles\u00a0: 3 sujets." in rendered.text
    assert any("Lire la suite\u00a0: Sécurité" in s for s in parser.found)  # aria-label
    assert {s: _faults(s) for s in strings if _faults(s)} == {}

"""Tests for the subscribers CSV import as spreadsheets write it: real files exported by each
convention (tests/data/csv/), encodings, delimiters, header and language spellings, dates."""

from __future__ import annotations

import codecs
import json
import shutil
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.audience import ImportResult, read_csv
from pipeline.errors import UsageError
from tests.conftest import Buzz
from tests.helpers import DATA

TZ = ZoneInfo("America/Toronto")
FILES = DATA / "csv"
HEADER = "email,language,consent_source,consent_at\n"


def _read(name: str, languages: tuple[str, ...] = ("en", "fr")) -> ImportResult:
    return read_csv(FILES / name, languages, TZ)


def _rows(result: ImportResult) -> list[tuple[str, str, str, str, str]]:
    return [(s.email, s.lang, s.consent_source, s.consent_at, s.name) for s in result.subscribers]


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "subscribers.csv"
    path.write_bytes(data)
    return path


def test_excel_french_canadian_semicolons_in_windows_1252() -> None:
    """Excel fr-CA "CSV (séparateur : point-virgule)": cp1252, `;`, CRLF, French headers,
    `FR`/`Français`/`fr-CA`/`anglais`, quoted `;`, empty rows; a bad date named by column."""
    result = _read("excel-fr-ca-semicolon-cp1252.csv")
    assert _rows(result) == [
        ("genevieve.tremblay@example.com", "fr", "formulaire d'inscription du site",
         "2026-03-14T10:22:00-04:00", "Geneviève Tremblay"),
        ("jean-francois.cote@example.net", "fr", "événement ; Forum TI de Québec 2026",
         "2026-04-29T11:05:00-04:00", "Jean-François Côté"),
        ("liam.obrien@example.net", "en", "webinaire", "2026-04-22T00:00:00-04:00",
         "Liam O\u2019Brien"),
        ("marie-eve.lapointe@example.org", "fr", "webinaire : « rançongiciels ; sauvegardes »",
         "2026-04-23T10:47:00-04:00", "Marie-Ève Lapointe"),
    ]  # fmt: skip
    assert result.extra_columns == ["Entreprise"]
    assert json.loads(result.subscribers[3].attributes) == {"Entreprise": 'Lapointe "et fils"'}
    assert result.problems == [
        f"{FILES / 'excel-fr-ca-semicolon-cp1252.csv'}:6: consent_at (column D): not a date:"
        " 'hier' (write YYYY-MM-DD or YYYY-MM-DD HH:MM, e.g. 2026-03-14 09:30)"
    ]


def test_excel_utf8_with_bom_and_english_headers() -> None:
    """Excel "CSV UTF-8": BOM, commas, `Consent Source`; `English`/`French`; a m/d/yyyy date
    is refused as ambiguous."""
    result = _read("excel-utf8-bom-comma.csv")
    assert _rows(result) == [
        ("sarah.mitchell@example.com", "en", "website signup form", "2026-02-03T09:14:00-05:00",
         "Sarah Mitchell"),
        ("raj.patel@example.org", "en", "event: Toronto IT Summit, 2026",
         "2026-05-12T15:40:00-04:00", "Raj Patel"),
        ("chloe.gagne@example.net", "fr", "website signup form", "2026-05-13T00:00:00-04:00",
         "Chloé Gagné"),
    ]  # fmt: skip
    assert result.problems == [
        f"{FILES / 'excel-utf8-bom-comma.csv'}:5: consent_at (column D): '3/14/2026 9:31' is"
        " ambiguous (day/month or month/day?): write YYYY-MM-DD, e.g. 2026-03-14"
    ]


def test_excel_unicode_text_is_utf16_with_tabs() -> None:
    """Excel "Unicode Text": UTF-16 LE with BOM, tabs, `E-mail`; `en-CA` and `fr_CA`."""
    result = _read("excel-unicode-text-utf16.txt")
    assert _rows(result) == [
        ("daniel.okafor@example.org", "en", "website signup form", "2026-08-27T14:03:00-04:00",
         "Daniel Okafor"),
        ("zoe.leblanc@example.com", "fr", "formulaire\tpapier", "2026-08-28T00:00:00-04:00",
         "Zoé Leblanc"),
    ]  # fmt: skip
    assert result.problems == []


def test_libreoffice_utf8_with_an_unsubscribed_line() -> None:
    """LibreOffice "Text CSV": UTF-8 without BOM, LF; `français`, `english`; T and Z dates."""
    result = _read("libreoffice-utf8-comma.csv")
    assert _rows(result) == [
        ("ines.haddad@example.com", "fr", "salon, Montréal", "2026-06-01T08:00:00-04:00",
         "Inès Haddad"),
        ("omar.said@example.com", "en", "salon", "2026-06-01T08:05:00+00:00", "Omar Saïd"),
    ]  # fmt: skip
    assert [s.unsubscribed_at for s in result.subscribers] == [None, "2026-07-01T12:00:00-04:00"]
    assert result.problems == []


def test_google_sheets_download_keeps_the_first_of_a_repeated_address() -> None:
    """Google Sheets CSV: `Email Address`, `Francais` without accent, no final line end; the
    repeated address keeps its first line; the Forms timestamp is kept as an attribute."""
    result = _read("google-sheets-comma.csv")
    assert _rows(result) == [
        ("ana.silva@example.com", "en", "google form", "2026-09-01T00:00:00-04:00", "Silva, Ana"),
        ("benoit.roy@example.ca", "fr", "google form", "2026-09-03T00:00:00-04:00", "Benoît Roy"),
    ]
    assert result.extra_columns == ["Timestamp"]
    assert json.loads(result.subscribers[0].attributes) == {"Timestamp": "2026-09-01 10:00:00"}
    assert result.problems == [
        f"{FILES / 'google-sheets-comma.csv'}:3: email (column B): duplicate of line 2, ignored"
    ]


def test_an_undecodable_file_says_what_was_tried_and_where(tmp_path: Path) -> None:
    """Neither UTF-8 nor Windows-1252 (0x81 is undefined there): both named, with the place."""
    path = _file(tmp_path, HEADER.encode() + b"ann@example.com,en,caf\x81,2026-01-02\n")
    with pytest.raises(UsageError) as caught:
        read_csv(path, ("en",), TZ)
    assert str(caught.value) == (
        f"{path}: cannot decode as UTF-8 (byte 0x81 at line 2, column 23) nor as Windows-1252"
        ' (byte 0x81 at line 2, column 23); save it as "CSV UTF-8"'
    )


def test_a_broken_utf16_file_names_the_encoding_its_mark_announced(tmp_path: Path) -> None:
    """A UTF-16 byte-order mark is trusted: a cut-off file is a UTF-16 error, not a guess."""
    path = _file(tmp_path, (HEADER + "a@example.com,en,x,2026-01-02\n").encode("utf-16")[:-1])
    with pytest.raises(UsageError, match=r"cannot decode as UTF-16 \(byte 0x0A at line 2, "):
        read_csv(path, ("en",), TZ)


def test_utf16_without_its_mark_is_refused_clearly(tmp_path: Path) -> None:
    """NUL characters mean UTF-16 without a byte-order mark: one clear line, not a csv error."""
    path = _file(tmp_path, HEADER.encode("utf-16-le"))
    with pytest.raises(UsageError, match="holds NUL characters: UTF-16 without a byte-order"):
        read_csv(path, ("en",), TZ)


def test_headers_match_without_case_accents_spaces_hyphens_or_underscores(tmp_path: Path) -> None:
    """`E-MAIL`, `Langue`, `Source du consentement`, `date_du_consentement`, `NOM`."""
    path = _file(
        tmp_path,
        " E-MAIL ;Langue;Source du consentement;DATE_DU_CONSENTEMENT;NOM;Date de Désabonnement\n"
        "ann@example.com;EN;form;2026-01-02;Ann;2026-02-01\n".encode(),
    )
    [sub] = read_csv(path, ("en",), TZ).subscribers
    assert (sub.email, sub.lang, sub.consent_source, sub.name) == (
        "ann@example.com", "en", "form", "Ann",
    )  # fmt: skip
    assert sub.unsubscribed_at == "2026-02-01T00:00:00-05:00"


def test_missing_columns_say_how_the_file_was_read(tmp_path: Path) -> None:
    """The message names the missing columns, the encoding, the delimiter and what was found."""
    path = _file(tmp_path, "Email;Langue;Source\nann@example.com;fr;x\n".encode("cp1252"))
    with pytest.raises(UsageError) as caught:
        read_csv(path, ("fr",), TZ)
    assert str(caught.value) == (
        f"{path}:1: header row lacks column(s) consent_source, consent_at (read as UTF-8,"
        " semicolon-separated; found 'Email', 'Langue', 'Source'); see \"Subscribers CSV\" in"
        " the README for the names accepted"
    )


def test_two_headers_for_one_column_are_refused(tmp_path: Path) -> None:
    """`Email` and `Courriel` both name the address: which one to keep is not guessed."""
    path = _file(tmp_path, b"Email,language,Courriel,consent_source,consent_at\n")
    with pytest.raises(UsageError, match=r"repeats column\(s\): email \(columns A and C\)"):
        read_csv(path, ("en",), TZ)


def test_the_delimiter_is_the_one_that_makes_sense_of_the_header(tmp_path: Path) -> None:
    """A header with commas inside a semicolon-separated file is read by its semicolons."""
    path = _file(
        tmp_path,
        b"email;language;consent_source;consent_at;Notes, remarks\n"
        b'ann@example.com;en;form, web;2026-01-02;"a; b"\n',
    )
    result = read_csv(path, ("en",), TZ)
    assert [s.consent_source for s in result.subscribers] == ["form, web"]
    assert json.loads(result.subscribers[0].attributes) == {"Notes, remarks": "a; b"}


@pytest.mark.parametrize(
    ("written", "code"),
    [("fr", "fr"), ("FR", "fr"), ("fr-CA", "fr"), ("fr_CA", "fr"), ("français", "fr"),
     ("Français", "fr"), ("FRANCAIS", "fr"), ("French", "fr"), ("en", "en"), ("en-US", "en"),
     ("English", "en"), ("anglais", "en")],
)  # fmt: skip
def test_languages_by_code_tag_or_name(tmp_path: Path, written: str, code: str) -> None:
    """A language is read from its code, a regional tag, or its name in en or fr (Babel)."""
    path = _file(tmp_path, f"{HEADER}ann@example.com,{written},form,2026-01-02\n".encode())
    assert [s.lang for s in read_csv(path, ("en", "fr"), TZ).subscribers] == [code]


def test_only_configured_languages_are_accepted(tmp_path: Path) -> None:
    """With only French configured, `English` and `de-DE` are refused with the choices."""
    path = _file(
        tmp_path,
        f"{HEADER}ann@example.com,English,f,2026-01-02\nbob@example.com,de-DE,f,2026-01-02\n"
        .encode(),
    )  # fmt: skip
    result = read_csv(path, ("fr",), TZ)
    assert result.subscribers == []
    assert result.problems == [
        f"{path}:2: language (column B): 'English' is not a configured language (fr)",
        f"{path}:3: language (column B): 'de-DE' is not a configured language (fr)",
    ]


@pytest.mark.parametrize(
    ("written", "stored"),
    [("2026-03-14", "2026-03-14T00:00:00-04:00"),
     ("2026-03-14 09:30", "2026-03-14T09:30:00-04:00"),
     ("2026-03-14 09:30:00", "2026-03-14T09:30:00-04:00"),
     ("2026-03-14T09:30:15.5", "2026-03-14T09:30:15.500000-04:00"),
     ("2026-03-14T09:30Z", "2026-03-14T09:30:00+00:00"),
     ("2026-03-14T09:30:00-0500", "2026-03-14T09:30:00-05:00")],
)  # fmt: skip
def test_iso_dates_with_a_space_or_t_or_none(tmp_path: Path, written: str, stored: str) -> None:
    """ISO 8601 dates, with or without time and offset; local time is the newsletter's."""
    path = _file(tmp_path, f"{HEADER}ann@example.com,en,form,{written}\n".encode())
    assert [s.consent_at for s in read_csv(path, ("en",), TZ).subscribers] == [stored]


@pytest.mark.parametrize(
    ("written", "problem"),
    [("14/03/2026", "'14/03/2026' is ambiguous (day/month or month/day?)"),
     ("03.04.2026", "'03.04.2026' is ambiguous (day/month or month/day?)"),
     ("2026-02-30", "not a date: '2026-02-30'"),
     ("20260314", "not a date: '20260314'"),
     ("46095", "not a date: '46095'")],
)  # fmt: skip
def test_dates_that_are_not_clear_iso_are_refused(
    tmp_path: Path, written: str, problem: str
) -> None:
    """Day/month orders, impossible dates, compact forms and Excel serials are refused."""
    path = _file(tmp_path, f"{HEADER}ann@example.com,en,form,{written}\n".encode())
    [reported] = read_csv(path, ("en",), TZ).problems
    assert reported.startswith(f"{path}:2: consent_at (column D): {problem}")


def test_every_bad_cell_of_a_line_is_named_in_column_order(tmp_path: Path) -> None:
    """One line, three problems: each with its column, and a value under no header."""
    path = _file(tmp_path, f"{HEADER}x,de,,2026-01-02,stray\n".encode())
    [problem] = read_csv(path, ("en",), TZ).problems
    parts = problem.removeprefix(f"{path}:2: ").split("; ")
    assert [part.split(": ")[0] for part in parts] == [
        "email (column A)", "language (column B)", "consent_source (column C)", "column E",
    ]  # fmt: skip


def test_import_command_reads_excel_french_file_and_never_resubscribes(
    buzz: Buzz, demo: Path
) -> None:
    """`buzz subscribers import` of the fr-CA Excel file: good lines in, the bad one on
    stderr with exit 2, and an unsubscribed address stays unsubscribed."""
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    assert buzz("subscribers", "unsubscribe", "genevieve.tremblay@example.com").returncode == 0
    shutil.copy(FILES / "excel-fr-ca-semicolon-cp1252.csv", demo / "excel.csv")
    result = buzz("subscribers", "import", "excel.csv")
    assert result.returncode == 2
    assert "excel.csv:6: consent_at (column D): not a date: 'hier'" in result.stderr
    assert "4 valid line(s): 0 new, 4 updated; 1 rejected." in result.stdout
    db = sqlite3.connect(demo / "var" / "buzz.sqlite")
    rows = {
        email: (source, left)
        for email, source, left in db.execute(
            "SELECT email, consent_source, unsubscribed_at FROM subscribers"
        )
    }
    assert (
        rows["marie-eve.lapointe@example.org"][0] == "webinaire : « rançongiciels ; sauvegardes »"
    )
    assert rows["genevieve.tremblay@example.com"][1] is not None


def test_a_bom_of_utf8_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    """The BOM Excel writes before `email` does not make the column unknown."""
    path = _file(tmp_path, codecs.BOM_UTF8 + f"{HEADER}ann@example.com,en,f,2026-01-02\n".encode())
    assert [s.email for s in read_csv(path, ("en",), TZ).subscribers] == ["ann@example.com"]

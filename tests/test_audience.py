"""Tests for pipeline.audience: CSV validation, the local audience, signed unsubscribe links."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.audience import LocalAudience, Signer, read_csv
from pipeline.errors import UsageError
from pipeline.models import Recipient
from pipeline.store import Store
from tests.helpers import ROOT

TZ = ZoneInfo("America/Toronto")
HEADER = "email,language,consent_source,consent_at,name,company\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "subs.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_demo_audience_reads_clean() -> None:
    """The demo CSV has 10 valid subscribers, one of them unsubscribed."""
    result = read_csv(ROOT / "demo" / "subscribers.csv", ("en", "fr"), TZ)
    assert result.problems == []
    assert len(result.subscribers) == 10
    assert sum(sub.unsubscribed_at is not None for sub in result.subscribers) == 1


def test_bad_lines_are_reported_with_their_numbers_and_not_imported(tmp_path: Path) -> None:
    """Bad address, language, consent and duplicates: each named by line and column; good
    lines kept."""
    path = _csv(
        tmp_path,
        "ann@example.com,en,form,2026-01-02T10:00:00-05:00,Ann,Acme\n"
        "not-an-address,en,form,2026-01-02,,\n"
        "bob@example.com,de,form,2026-01-02,,\n"
        "cy@example.com,fr,,2026-01-02,,\n"
        "dee@example.com,fr,form,yesterday,,\n"
        "ANN@example.com,en,form,2026-01-02,,\n",
    )
    result = read_csv(path, ("en", "fr"), TZ)
    assert [sub.email for sub in result.subscribers] == ["ann@example.com"]
    assert result.problems == [
        f"{path}:3: email (column A): 'not-an-address' is not a valid address:"
        " An email address must have an @-sign.",
        f"{path}:4: language (column B): 'de' is not a configured language (en, fr)",
        f"{path}:5: consent_source (column C): empty (CASL: keep how consent was given)",
        f"{path}:6: consent_at (column D): not a date: 'yesterday'"
        " (write YYYY-MM-DD or YYYY-MM-DD HH:MM, e.g. 2026-03-14 09:30)",
        f"{path}:7: email (column A): duplicate of line 2, ignored",
    ]


def test_unknown_columns_are_kept_as_attributes(tmp_path: Path) -> None:
    """Columns buzz does not know are kept, not dropped."""
    result = read_csv(_csv(tmp_path, "ann@example.com,en,form,2026-01-02,Ann,Acme\n"), ("en",), TZ)
    assert result.extra_columns == ["company"]
    assert json.loads(result.subscribers[0].attributes) == {"company": "Acme"}


def test_a_date_without_offset_is_read_in_the_newsletter_time_zone(tmp_path: Path) -> None:
    """consent_at without an offset is local time (America/Toronto)."""
    result = read_csv(_csv(tmp_path, "ann@example.com,en,form,2026-01-02T10:00,,\n"), ("en",), TZ)
    assert result.subscribers[0].consent_at == "2026-01-02T10:00:00-05:00"


def test_missing_columns_stop_the_import(tmp_path: Path) -> None:
    """A header without the required columns is one clear error."""
    with pytest.raises(UsageError, match="lacks column"):
        read_csv(_csv(tmp_path, "a@example.com\n", header="email\n"), ("en",), TZ)


def test_signed_tokens_verify_and_tampering_fails() -> None:
    """A token names its address; a forged one or another secret's one is refused."""
    signer = Signer("s3cret")
    token = signer.token("ann@example.com")
    assert signer.verify(token) == "ann@example.com"
    assert Signer("other").verify(token) is None
    forged = Signer("other").token("bob@example.com")
    assert signer.verify(forged) is None
    assert signer.verify("garbage") is None


def test_local_audience_excludes_the_unsubscribed(tmp_path: Path) -> None:
    """Only subscribed addresses receive; is_subscribed sees later unsubscribes."""
    store = Store(tmp_path / "s.sqlite")
    result = read_csv(ROOT / "demo" / "subscribers.csv", ("en", "fr"), TZ)
    store.upsert_subscribers(result.subscribers, datetime.now(UTC))
    audience = LocalAudience(store, "https://example.com/u?token={token}", lambda: Signer("k"))
    french = list(audience.recipients("fr"))
    assert len(french) == 4
    assert all(audience.is_subscribed(r) for r in french)
    store.unsubscribe(french[0].email, datetime.now(UTC))
    assert not audience.is_subscribed(french[0])
    assert not audience.is_subscribed(Recipient("stranger@example.com", "fr"))
    url = audience.unsubscribe_url(french[1])
    assert url.startswith("https://example.com/u?token=")
    assert Signer("k").verify(url.split("token=")[1]) == french[1].email


def test_addresses_that_could_not_be_sent_are_refused_at_import(tmp_path: Path) -> None:
    """A non-ASCII mailbox name is refused; an international domain is kept in IDNA form."""
    result = read_csv(
        _csv(tmp_path, "josé@exemple.ca,fr,form,2026-01-02,,\na@exämple.ca,fr,form,2026-01-02,,\n"),
        ("fr",),
        TZ,
    )
    assert [sub.email for sub in result.subscribers] == ["a@xn--exmple-cua.ca"]
    assert "josé@exemple.ca" in result.problems[0]


def test_header_only_and_repeated_columns(tmp_path: Path) -> None:
    """A header without rows imports nothing, cleanly; a repeated column is refused."""
    assert read_csv(_csv(tmp_path, ""), ("en",), TZ).subscribers == []
    with pytest.raises(UsageError, match="repeats column"):
        read_csv(_csv(tmp_path, "", header="email,email,language,consent_source,consent_at\n"),
                 ("en",), TZ)  # fmt: skip


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    """After a quoted field spanning two lines, problems still name the right line."""
    path = _csv(
        tmp_path,
        'ann@example.com,en,"form,\nsecond line",2026-01-02,Ann,\nbad,en,form,2026-01-02,,\n',
    )
    result = read_csv(path, ("en",), TZ)
    assert [problem.split(": ")[0] for problem in result.problems] == [f"{path}:4"]

"""A record of every run: each command that changes state is a run in the store's runs table,
and every run — whatever stops it — ends with one `run_finished` event naming its outcome."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pipeline.errors import (
    BreakerTripped,
    ConfigError,
    DeliveryError,
    ExitCode,
    LockedError,
    Outcome,
    UsageError,
)
from pipeline.transport import QuotaReached, Transient
from tests.conftest import Cli
from tests.helpers import lock_held_by_another_process, ses_environment
from tests.ses_standin import SesStandIn

STATE = Path("var/buzz.sqlite")
PAIRED = ("https://blog.example.com/?p=4377", "https://blog.example.com/?p=4384")


def _finished(logs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's one `run_finished` event, which is its last event."""
    ends = [event for event in logs if event["event"] == "run_finished"]
    assert len(ends) == 1, ends
    assert logs[-1] is ends[0]
    assert {"command", "outcome", "exit_code", "duration_ms", "dry_run"} <= set(ends[0])
    assert ends[0]["duration_ms"] >= 0
    return ends[0]


def _ran(cli: Cli, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `buzz ARGS` in process; its `run_finished` event (whose exit code it checks)."""
    with capture_logs() as logs:
        result = cli(*args, env=env)
    event = _finished(logs)
    assert result.exit_code == event["exit_code"], result.stdout + result.stderr
    return event


def _recorded(demo: Path) -> list[tuple[str, str, int]]:
    """(command, outcome, exit code) of every recorded run, oldest first."""
    if not (demo / STATE).exists():
        return []
    db = sqlite3.connect(demo / STATE)
    try:
        rows = db.execute("SELECT command, outcome, exit_code FROM runs ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [tuple(row) for row in rows]


def _use_ses(demo: Path, extra: str = "") -> None:
    config = demo / "buzz.toml"
    text = config.read_text().replace('transport = "outbox"', 'transport = "ses"')
    config.write_text(text.replace("[delivery]", f"[delivery]\n{extra}"))


def test_every_command_that_changes_state_is_a_recorded_run(cli: Cli, demo: Path) -> None:
    """import, fetch, build, proof, send, pair, unpair, unsubscribe and run each end with one
    `run_finished` and one row in the runs table, with their command and outcome."""
    expected = [
        (("subscribers", "import", "demo/subscribers.csv"), "subscribers import", "done"),
        (("fetch",), "fetch", "done"),
        (("build",), "build", "done"),
        (("send", "--test", "me@example.com"), "proof", "done"),
        (("unpair", *PAIRED), "unpair", "done"),
        (("pair", *PAIRED), "pair", "done"),
        (("send", "--yes"), "send", "sent"),
        (("send", "--yes"), "send", "usage_error"),  # no edition left to send
        (("subscribers", "unsubscribe", "raj.patel@example.org"), "subscribers unsubscribe",
         "done"),
        (("run",), "run", "nothing_new"),
    ]  # fmt: skip
    for args, command, outcome in expected:
        event = _ran(cli, *args)
        assert (event["command"], event["outcome"], event["dry_run"]) == (command, outcome, False)
    assert _recorded(demo) == [
        (command, outcome, Outcome(outcome).exit_code) for _, command, outcome in expected
    ]


def test_a_run_that_sends_logs_its_counts(cli: Cli, demo: Path) -> None:
    """`buzz run`: outcome sent, the edition, its stories, new posts and the ledger counts."""
    assert cli("subscribers", "import", "demo/subscribers.csv").exit_code == 0
    event = _ran(cli, "run")
    assert event["outcome"] == "sent"
    assert (event["stories"], event["new_posts"], event["feeds_failed"]) == (4, 27, 0)
    [(key, counts)] = [(k, v) for k, v in event["deliveries"].items() if k.endswith("/en")]
    assert key == f"{event['edition']}/en"
    assert counts["sent"] == 5


def test_status_shows_the_last_run_of_every_kind(cli: Cli, demo: Path) -> None:
    """`buzz status` lists the latest run of each command; `--json` has them and the last ten."""
    assert cli("subscribers", "import", "demo/subscribers.csv").exit_code == 0
    assert cli("fetch").exit_code == 0
    assert cli("run").exit_code == 0
    assert cli("run").exit_code == 0
    text = cli("status").stdout
    assert "Last runs:" in text
    lines = [line.strip() for line in text.splitlines() if " — " in line]
    assert [line.split(":")[0] for line in lines] == ["run", "fetch", "subscribers import"]
    assert lines[0].endswith("— nothing_new (exit 0)")
    doc = json.loads(cli("status", "--json").stdout)
    assert set(doc["last_runs"]) == {"run", "fetch", "subscribers import"}
    assert doc["last_runs"]["run"]["outcome"] == "nothing_new"
    assert [run["command"] for run in doc["runs"]] == [
        "run", "run", "fetch", "subscribers import",
    ]  # fmt: skip
    assert doc["runs"][1]["summary"]["stories"] == 4


def test_a_dry_run_logs_its_outcome_and_records_nothing(cli: Cli, demo: Path) -> None:
    """`run --dry-run`: outcome dry_run, what the real run would have been, no row."""
    assert cli("subscribers", "import", "demo/subscribers.csv").exit_code == 0
    event = _ran(cli, "run", "--dry-run")
    assert (event["outcome"], event["would_be"], event["dry_run"]) == ("dry_run", "sent", True)
    assert event["would_send"] != {}
    assert _recorded(demo) == [("subscribers import", "done", 0)]


def test_rejected_csv_lines_are_an_input_rejected_run(cli: Cli, demo: Path) -> None:
    """An import with a bad line: exit 2, outcome input_rejected, recorded."""
    bad = demo / "bad.csv"
    bad.write_text("email,language,consent_source,consent_at\nx,en,form,2026-01-01\n")
    event = _ran(cli, "subscribers", "import", "bad.csv")
    assert (event["outcome"], event["exit_code"], event["rejected"]) == ("input_rejected", 2, 1)
    assert _recorded(demo) == [("subscribers import", "input_rejected", 2)]


def test_every_feed_of_a_language_failing_is_feeds_unavailable(cli: Cli, demo: Path) -> None:
    """The French feed is gone: exit 75, outcome feeds_unavailable, recorded."""
    (demo / "demo" / "feeds" / "le-buzz-it-fr.xml").unlink()
    event = _ran(cli, "run")
    assert (event["outcome"], event["exit_code"]) == ("feeds_unavailable", 75)
    assert event["languages_unavailable"] == ["fr"]
    assert _recorded(demo) == [("run", "feeds_unavailable", 75)]


def test_a_refused_lock_is_a_locked_run(cli: Cli, demo: Path) -> None:
    """Another process holds the lock: exit 75, outcome locked, and the run is recorded."""
    assert cli("fetch").exit_code == 0
    with lock_held_by_another_process(demo / STATE):
        event = _ran(cli, "run")
    assert (event["command"], event["outcome"], event["exit_code"]) == ("run", "locked", 75)
    assert "another buzz process holds" in event["error"]
    assert _recorded(demo)[-1] == ("run", "locked", 75)


def test_a_configuration_error_ends_the_run_before_the_store(cli: Cli, demo: Path) -> None:
    """A typo in buzz.toml: exit 2, outcome config_error logged; no store to record it in."""
    config = demo / "buzz.toml"
    config.write_text(config.read_text().replace("max_stories", "max_storys"))
    event = _ran(cli, "run")
    assert (event["outcome"], event["exit_code"]) == ("config_error", 2)
    assert event["error"] == "buzz.toml: edition.max_storys: unknown key"
    assert not (demo / STATE).exists()


def test_a_missing_secret_is_a_recorded_configuration_error(cli: Cli, demo: Path) -> None:
    """SES transport without BUZZ_UNSUBSCRIBE_SECRET: exit 2, config_error, recorded."""
    _use_ses(demo)
    event = _ran(cli, "run")
    assert (event["outcome"], event["exit_code"]) == ("config_error", 2)
    assert "BUZZ_UNSUBSCRIBE_SECRET is not set" in event["error"]
    assert _recorded(demo) == [("run", "config_error", 2)]


def test_an_unknown_edition_is_a_usage_error(cli: Cli, demo: Path) -> None:
    """`buzz send nope`: exit 2, outcome usage_error, recorded."""
    event = _ran(cli, "send", "nope", "--yes")
    assert (event["command"], event["outcome"], event["exit_code"]) == ("send", "usage_error", 2)
    assert _recorded(demo) == [("send", "usage_error", 2)]


def test_a_paused_account_is_account_refused(cli: Cli, demo: Path) -> None:
    """SES answers SendingPausedException: exit 1, outcome account_refused, recorded."""
    _use_ses(demo)
    with SesStandIn(max_send_rate=50) as ses:
        env = ses_environment(ses.url)
        assert cli("subscribers", "import", "demo/subscribers.csv", env=env).exit_code == 0
        ses.pause()
        event = _ran(cli, "run", env=env)
    assert (event["outcome"], event["exit_code"]) == ("account_refused", 1)
    assert _recorded(demo)[-1] == ("run", "account_refused", 1)


def test_a_used_up_quota_is_quota_reached(cli: Cli, demo: Path) -> None:
    """Three messages left in the account's day: exit 75, outcome quota_reached, recorded."""
    _use_ses(demo)
    with SesStandIn(max_send_rate=50, max_24h=3) as ses:
        env = ses_environment(ses.url)
        assert cli("subscribers", "import", "demo/subscribers.csv", env=env).exit_code == 0
        event = _ran(cli, "run", env=env)
    assert (event["outcome"], event["exit_code"]) == ("quota_reached", 75)
    assert _recorded(demo)[-1] == ("run", "quota_reached", 75)


def test_a_provider_that_keeps_failing_is_provider_unavailable(cli: Cli, demo: Path) -> None:
    """Every SendEmail answered 503 until the breaker trips: exit 75, provider_unavailable."""
    _use_ses(demo, "breaker_window = 4\nbreaker_failure_ratio = 0.5")
    with SesStandIn(max_send_rate=50) as ses:
        env = ses_environment(ses.url)
        assert cli("subscribers", "import", "demo/subscribers.csv", env=env).exit_code == 0
        ses.fail_next("ServiceUnavailable", count=10_000)
        event = _ran(cli, "run", env=env)
    assert (event["outcome"], event["exit_code"]) == ("provider_unavailable", 75)
    assert _recorded(demo)[-1] == ("run", "provider_unavailable", 75)


def test_a_permanently_failed_recipient_is_a_partial_run(cli: Cli, demo: Path) -> None:
    """One recipient rejected for good: exit 3, outcome partial, recorded."""
    _use_ses(demo)
    with SesStandIn(max_send_rate=50) as ses:
        env = ses_environment(ses.url)
        assert cli("subscribers", "import", "demo/subscribers.csv", env=env).exit_code == 0
        ses.reject("raj.patel@example.org")
        event = _ran(cli, "run", env=env)
    assert (event["outcome"], event["exit_code"]) == ("partial", 3)
    assert _recorded(demo)[-1] == ("run", "partial", 3)


def _damage_the_editions(demo: Path) -> None:
    """What a bad disk or a careless hand does: the stored editions are no longer JSON."""
    db = sqlite3.connect(demo / STATE)
    with db:
        db.execute("UPDATE editions SET doc = 'not json'")
    db.close()


def test_an_unexpected_exception_is_a_crashed_run(cli: Cli, demo: Path) -> None:
    """A damaged edition in the store: `crashed` with its traceback, then run_finished with
    outcome crashed and exit 1; one line on stderr; recorded."""
    assert cli("fetch").exit_code == 0
    assert cli("build").exit_code == 0
    _damage_the_editions(demo)
    with capture_logs() as logs:
        result = cli("send", "--yes")
    event = _finished(logs)
    assert (event["outcome"], event["exit_code"], result.exit_code) == ("crashed", 1, 1)
    [crash] = [e for e in logs if e["event"] == "crashed"]
    assert crash["exc_info"] is True
    assert result.stderr.startswith("buzz: unexpected error: JSONDecodeError")
    assert _recorded(demo)[-1] == ("send", "crashed", 1)


def test_a_crashed_subprocess_prints_one_line_and_logs_run_finished_last(
    buzz: Any, demo: Path
) -> None:
    """The real process: a crash is one line for the person, and the JSON log ends with
    run_finished (outcome crashed, exit 1)."""
    assert buzz("fetch").returncode == 0
    assert buzz("build").returncode == 0
    _damage_the_editions(demo)
    result = buzz("send", "--yes")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line for line in lines if not line.startswith("{")] == [
        "buzz: unexpected error: JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
    ]
    last = json.loads(lines[-1])
    assert (last["event"], last["command"], last["outcome"]) == ("run_finished", "send", "crashed")


def test_a_command_line_refused_before_its_command_runs_still_logs_run_finished(
    buzz: Any, demo: Path
) -> None:
    """The real process: an unknown option of a state-changing command (a cron line's typo)
    ends with run_finished, outcome usage_error, exit 2; a read-only command's does not."""
    result = buzz("run", "--dry-runn")
    assert result.returncode == 2
    last = json.loads(result.stderr.splitlines()[-1])
    assert (last["event"], last["command"], last["outcome"]) == (
        "run_finished",
        "run",
        "usage_error",
    )
    assert "run_finished" not in buzz("status", "--jsonn").stderr


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (ConfigError(["x"]), Outcome.CONFIG_ERROR, ExitCode.USAGE),
        (UsageError("x"), Outcome.USAGE_ERROR, ExitCode.USAGE),
        (LockedError("x"), Outcome.LOCKED, ExitCode.TEMPFAIL),
        (DeliveryError("x"), Outcome.ACCOUNT_REFUSED, ExitCode.FAILED),
        (QuotaReached("x"), Outcome.QUOTA_REACHED, ExitCode.TEMPFAIL),
        (Transient("x"), Outcome.PROVIDER_UNAVAILABLE, ExitCode.TEMPFAIL),
        (BreakerTripped("x"), Outcome.PROVIDER_UNAVAILABLE, ExitCode.TEMPFAIL),
    ],
    ids=lambda value: type(value).__name__,
)
def test_each_error_type_names_its_outcome_and_the_contract_exit_code(
    error: Exception, outcome: Outcome, code: ExitCode
) -> None:
    """The error's type decides the outcome; the outcome decides the exit code."""
    assert (error.outcome, error.exit_code) == (outcome, code)  # type: ignore[attr-defined]

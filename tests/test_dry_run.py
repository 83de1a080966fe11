"""`--dry-run` changes nothing at all: not a row of the state store, not a file, not a message
handed to a provider; on a populated store and folder, whatever the command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pipeline.store import Store
from tests.conftest import Cli
from tests.helpers import add_feed_item, ses_environment, snapshot
from tests.ses_standin import SesStandIn

EN_FEED = Path("demo/feeds/it-buzz-en.xml")
FR_FEED = Path("demo/feeds/le-buzz-it-fr.xml")
PAIRED = ("https://blog.example.com/?p=4377", "https://blog.example.com/?p=4384")
STATE = Path("var/buzz.sqlite")


@pytest.fixture
def populated(cli: Cli, demo: Path) -> Path:
    """A store and folder with history: a sent edition, a draft of one new post, subscribers,
    runs; and new posts in the feeds, not fetched yet, so there is something to build."""
    assert cli("subscribers", "import", "demo/subscribers.csv").exit_code == 0
    assert cli("run").exit_code == 0
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    add_feed_item(demo / EN_FEED, "9001", "Patch Tuesday, Explained", three_days_ago)
    assert cli("fetch").exit_code == 0
    assert cli("build").exit_code == 0
    add_feed_item(demo / EN_FEED, "9002", "Backups That Restore", three_days_ago)
    add_feed_item(demo / FR_FEED, "9003", "Des sauvegardes qui se restaurent", three_days_ago)
    (demo / "new.csv").write_text(
        "email,language,consent_source,consent_at\n"
        "new.reader@example.com,fr,website signup form,2026-11-01\n"
        "raj.patel@example.org,fr,event: IT day,2026-11-02\n",
        encoding="utf-8",
    )
    return demo


COMMANDS = [
    ("run",),
    ("fetch",),
    ("fetch", "--backfill"),
    ("build",),
    ("send", "--yes"),
    ("send", "--test", "me@example.com"),
    ("subscribers", "import", "new.csv"),
    ("subscribers", "unsubscribe", "raj.patel@example.org"),
    ("pair", *PAIRED),
    ("unpair", *PAIRED),
    ("preview",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_dry_run_changes_nothing_that_the_real_command_changes(
    cli: Cli, populated: Path, command: tuple[str, ...]
) -> None:
    """Store dump and file tree are identical after the dry run, and differ after the real
    command (so the comparison can see a change)."""
    before = snapshot(populated / STATE, populated)
    with capture_logs() as logs:
        dry = cli(*command, "--dry-run")
    assert dry.exit_code == 0, dry.stdout + dry.stderr
    assert "Dry run" in dry.stdout or "dry run" in dry.stdout
    assert snapshot(populated / STATE, populated) == before
    finished = [e for e in logs if e["event"] == "run_finished"]
    if command != ("preview",):
        assert [(e["outcome"], e["dry_run"]) for e in finished] == [("dry_run", True)]
    real = cli(*command)
    assert real.exit_code == 0, real.stdout + real.stderr
    assert snapshot(populated / STATE, populated) != before


def test_a_dry_run_does_the_work_it_rehearses(cli: Cli, populated: Path) -> None:
    """`run --dry-run` fetches the new posts, rebuilds the draft with them and counts the
    messages it would send: the rehearsal reads its own writes."""
    dry = cli("run", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "it-buzz-en.xml: 16 entries, 1 new" in dry.stdout
    assert "le-buzz-it-fr.xml: 14 entries, 1 new" in dry.stdout
    assert "2 stories (en 2, fr 1)" in dry.stdout  # the draft's post, and the new pair
    assert "en: dry run — 5 message(s) built, none sent" in dry.stdout
    assert "would be written to var/out/editions/" in dry.stdout


def test_a_dry_run_proof_builds_the_proofs_and_leaves_the_draft_a_draft(
    cli: Cli, populated: Path
) -> None:
    """`send --test ADDR --dry-run`: the proofs are built, none is sent, the draft stays."""
    dry = cli("send", "--test", "me@example.com", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "built, none sent (dry run): 1 message(s) to me@example.com" in dry.stdout
    store = Store(populated / STATE)
    assert [str(state) for _, state in store.editions()] == ["draft", "sent"]
    store.close()


def test_dry_runs_send_nothing_through_ses(cli: Cli, populated: Path) -> None:
    """With the SES transport, dry runs of a send, a proof and a run make no SendEmail call."""
    config = populated / "buzz.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "ses"'))
    before = snapshot(populated / STATE, populated)
    with SesStandIn(max_send_rate=10) as ses:
        env = ses_environment(ses.url)
        for command in (("send", "--yes"), ("send", "--test", "me@example.com"), ("run",)):
            result = cli(*command, "--dry-run", env=env)
            assert result.exit_code == 0, result.stderr
        assert ses.messages == []
        assert "messages/s, about" in cli("send", "--dry-run", env=env).stdout  # account read
    assert snapshot(populated / STATE, populated) == before


def test_a_dry_run_on_a_fresh_folder_creates_nothing(cli: Cli, demo: Path) -> None:
    """`run --dry-run` before any real run: it reads the feeds and builds the edition, and
    neither the state store nor the output folder comes into being."""
    dry = cli("run", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "4 stories (en 4, fr 4)" in dry.stdout
    assert not (demo / "var").exists()

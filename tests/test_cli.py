"""End-to-end tests of the `buzz` command on a copy of the demo: the real process, real files."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
import subprocess
from pathlib import Path

from pipeline.models import DeliveryState, EditionState, Recipient
from tests.conftest import Buzz
from tests.helpers import built_draft, lock_held_by_another_process, ses_environment

UNSUBSCRIBED = "mathieu.belanger@example.com"


def _emails(folder: Path) -> dict[str, list[email.message.EmailMessage]]:
    return {
        lang: [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in sorted((folder / lang).glob("*.eml"))
        ]
        for lang in ("en", "fr")
    }


def _said(stderr: str) -> list[str]:
    """The lines of stderr written for a person (the others are JSON log events)."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]


def _demo_run(buzz: Buzz) -> subprocess.CompletedProcess[str]:
    imported = buzz("subscribers", "import", "demo/subscribers.csv")
    assert imported.returncode == 0, imported.stderr
    return buzz("run")


def test_demo_run_delivers_both_languages_then_finds_nothing_new(buzz: Buzz, demo: Path) -> None:
    """`make run`: both editions to the outbox, the unsubscribed skipped; again: nothing new."""
    first = _demo_run(buzz)
    assert first.returncode == 0, first.stderr
    assert "Edition " in first.stdout
    assert "4 stories (en 4, fr 4)" in first.stdout
    edition_id = first.stdout.split("Edition ")[1].split(":")[0]
    outbox = demo / "var" / "out" / "outbox" / edition_id
    mails = _emails(outbox)
    assert len(mails["en"]) == 5
    assert len(mails["fr"]) == 4
    recipients = [m["To"].addresses[0].addr_spec for lang in mails.values() for m in lang]
    assert len(set(recipients)) == 9
    assert UNSUBSCRIBED not in recipients
    assert all(m["Subject"].startswith("Le buzz IT\u00a0: ") for m in mails["fr"])
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in mails["en"])
    folder = demo / "var" / "out" / "editions" / edition_id
    for name in ("edition.json", "en.html", "en.txt", "en.eml", "fr.html", "fr.txt", "fr.eml"):
        assert (folder / name).is_file(), name
    doc = json.loads((folder / "edition.json").read_text())
    assert [set(story) >= {"en", "fr", "related"} for story in doc["stories"]] == [True] * 4

    second = _demo_run(buzz)
    assert second.returncode == 0, second.stderr
    assert "Nothing new to send." in second.stdout
    assert len(_emails(outbox)["en"]) == 5


def test_logs_are_json_lines_with_run_id_and_stage_counts(buzz: Buzz) -> None:
    """On a non-terminal stderr every line is a JSON event with event, level, timestamp, run_id."""
    result = _demo_run(buzz)
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"event", "level", "timestamp", "run_id"} <= set(e) for e in events)
    assert len({e["run_id"] for e in events}) == 1
    names = [e["event"] for e in events]
    for stage in ("fetch_finished", "compose_finished", "render_finished", "send_finished"):
        assert stage in names
    assert all("duration_ms" in e for e in events if e["event"].endswith("_finished"))
    assert "@" not in result.stderr.replace("buzz@news.example.com", "")


def test_configuration_error_is_one_line_and_exit_2(buzz: Buzz, demo: Path) -> None:
    """A typo in the config: exit 2, the file and key named, no traceback; the log still
    ends with run_finished."""
    config = demo / "buzz.toml"
    config.write_text(config.read_text().replace("max_stories", "max_storys"))
    result = buzz("run")
    assert result.returncode == 2
    assert _said(result.stderr) == ["buzz: buzz.toml: edition.max_storys: unknown key"]
    assert "Traceback" not in result.stderr
    last = json.loads(result.stderr.splitlines()[-1])
    assert (last["event"], last["outcome"], last["exit_code"]) == (
        "run_finished",
        "config_error",
        2,
    )


def test_a_second_concurrent_run_exits_75_and_changes_nothing(buzz: Buzz, demo: Path) -> None:
    """While another process holds the state lock, `buzz run` exits 75 at once."""
    with lock_held_by_another_process(demo / "var" / "buzz.sqlite"):
        result = buzz("run")
    assert result.returncode == 75
    assert "another buzz process holds" in result.stderr
    assert not (demo / "var" / "out").exists()


def test_build_then_proof_then_send_then_status(buzz: Buzz, demo: Path) -> None:
    """Marketing's flow: build a draft, proof it to themselves (no ledger), send it, check."""
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    assert buzz("fetch").returncode == 0
    built = buzz("build")
    assert built.returncode == 0
    assert "Edition " in built.stdout
    edition_id = built.stdout.split("Edition ")[1].split(":")[0]

    proof = buzz("send", "--test", "me@example.com")
    assert proof.returncode == 0, proof.stderr
    proofs = demo / "var" / "out" / "outbox" / edition_id / "proofs"
    assert len(list(proofs.rglob("*.eml"))) == 2
    status = json.loads(buzz("status", "--json").stdout)
    assert status["editions"][0]["state"] == "proofed"
    assert status["editions"][0]["languages"] == {}

    refused = buzz("send")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr

    dry = buzz("send", "--dry-run")
    assert dry.returncode == 0
    assert "dry run — 5 message(s) built" in dry.stdout

    sent = buzz("send", "--yes")
    assert sent.returncode == 0, sent.stderr
    status = json.loads(buzz("status", "--json").stdout)
    [edition] = status["editions"]
    assert edition["state"] == "sent"
    assert edition["languages"]["en"] == {
        "recipients": 5, "sent": 5, "failed": 0, "in_doubt": 0, "skipped": 0, "pending": 0,
        "sending": 0,
    }  # fmt: skip
    assert [f["ok"] for f in status["feeds"]] == [True, True]

    again = buzz("send", edition_id, "--yes")
    assert again.returncode == 0
    assert "already sent" in again.stdout


def test_lang_restricts_the_send(buzz: Buzz, demo: Path) -> None:
    """`--lang fr` sends only the French edition."""
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    result = buzz("run", "--lang", "fr")
    assert result.returncode == 0, result.stderr
    outbox = next((demo / "var" / "out" / "outbox").iterdir())
    assert [p.name for p in outbox.iterdir()] == ["fr"]


def test_subscribers_commands(buzz: Buzz, demo: Path) -> None:
    """Import reports bad lines with exit 2, list shows status, unsubscribe is recorded."""
    bad = demo / "bad.csv"
    bad.write_text("email,language,consent_source,consent_at\nx,en,form,2026-01-01\n")
    result = buzz("subscribers", "import", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: email (column A): 'x'" in result.stderr
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    listed = buzz("subscribers", "list", "--lang", "fr").stdout.splitlines()
    assert len(listed) == 5
    assert sum("unsubscribed" in line for line in listed) == 1
    assert buzz("subscribers", "unsubscribe", "nobody@example.com").returncode == 2
    gone = buzz("subscribers", "unsubscribe", "Chloe.Gagne@example.net")
    assert gone.returncode == 0, gone.stderr
    db = sqlite3.connect(demo / "var" / "buzz.sqlite")
    [(when,)] = db.execute(
        "SELECT unsubscribed_at FROM subscribers WHERE email = 'chloe.gagne@example.net'"
    )
    assert when is not None


def test_every_command_has_help(buzz: Buzz) -> None:
    """Each command of the contract answers --help."""
    for command in (
        ["run"], ["fetch"], ["build"], ["preview"], ["send"], ["status"],
        ["subscribers", "import"], ["subscribers", "list"], ["subscribers", "unsubscribe"],
    ):  # fmt: skip
        result = buzz(*command, "--help")
        assert result.returncode == 0, command
        assert "--config" in result.stdout, command


def _interrupt_a_send(buzz: Buzz, demo: Path) -> str:
    """Build an edition and leave it as a crashed send would: frozen, one row `sending`."""
    from pipeline.config import load
    from pipeline.run import Job
    from pipeline.store import Store

    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    assert buzz("fetch").returncode == 0
    assert buzz("build").returncode == 0
    settings = load(demo / "buzz.toml")
    job = Job(settings, Store(settings.state_path))
    [(edition_id, _)] = job.store.editions()
    job.store.set_edition_state(edition_id, EditionState.SENDING)
    recipients = list(job.audience().recipients("en"))
    job.store.freeze_audience(edition_id, "en", recipients)
    job.store.mark(edition_id, recipients[0], DeliveryState.SENDING)
    return edition_id


def test_status_after_a_crash_reports_in_flight_messages_in_doubt(buzz: Buzz, demo: Path) -> None:
    """A row left `sending` by a dead process is in doubt, not pending."""
    edition_id = _interrupt_a_send(buzz, demo)
    status = json.loads(buzz("status", "--json").stdout)
    [edition] = status["editions"]
    assert edition["id"] == edition_id
    assert edition["state"] == "sending"
    en = edition["languages"]["en"]
    assert (en["in_doubt"], en["sending"], en["pending"]) == (1, 0, 4)


def test_dry_run_never_resumes_an_interrupted_send(buzz: Buzz, demo: Path) -> None:
    """`run --dry-run` rehearses the interrupted edition instead of finishing it."""
    edition_id = _interrupt_a_send(buzz, demo)
    result = buzz("run", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"Dry run of edition {edition_id}" in result.stdout
    assert not (demo / "var" / "out" / "outbox").exists()
    resumed = buzz("run")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed the interrupted send of edition {edition_id}" in resumed.stdout
    assert len(list((demo / "var" / "out" / "outbox" / edition_id / "en").iterdir())) == 4
    status = json.loads(buzz("status", "--json").stdout)["editions"][0]
    assert status["state"] == "partial"
    assert status["languages"]["en"]["in_doubt"] == 1


def test_a_language_without_subscribers_still_finishes_the_edition(buzz: Buzz, demo: Path) -> None:
    """No French subscriber: the edition is sent; a later French subscriber never gets it."""
    english_only = demo / "en.csv"
    lines = (demo / "demo" / "subscribers.csv").read_text().splitlines()
    english_only.write_text(
        "\n".join([lines[0], *(line for line in lines[1:] if ",en," in line)]) + "\n"
    )
    assert buzz("subscribers", "import", str(english_only)).returncode == 0
    first = buzz("run")
    assert first.returncode == 0, first.stderr
    status = json.loads(buzz("status", "--json").stdout)["editions"][0]
    assert status["state"] == "sent"
    assert status["languages"]["fr"]["recipients"] == 0
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    second = buzz("run")
    assert "Nothing new to send." in second.stdout
    assert "Resumed" not in second.stdout
    assert not list((demo / "var" / "out" / "outbox").rglob("fr/*.eml"))


def test_common_options_are_accepted_everywhere(buzz: Buzz, demo: Path) -> None:
    """--yes and --dry-run after any command (tests/test_dry_run.py shows what a dry run
    leaves untouched); then the real run works as usual."""
    assert buzz("subscribers", "import", "demo/subscribers.csv", "--dry-run").returncode == 0
    assert buzz("fetch", "--dry-run", "--yes").returncode == 0
    assert buzz("status", "--dry-run", "--yes").returncode == 0
    assert not (demo / "var").exists()
    assert buzz("run", "--yes").returncode == 0


def test_bad_proof_address_and_unusable_state_are_usage_errors(buzz: Buzz, demo: Path) -> None:
    """A malformed --test address or a state path that is a folder: exit 2, one line."""
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    assert buzz("run").returncode == 0
    for bad in ("foo", "x@example.com>, evil@example.com"):
        result = buzz("send", "--test", bad)
        assert result.returncode == 2
        assert result.stderr.startswith("buzz: --test: ")
        assert len(_said(result.stderr)) == 1
    config = demo / "buzz.toml"
    config.write_text(config.read_text().replace('state = "var/buzz.sqlite"', 'state = "demo"'))
    result = buzz("status")
    assert result.returncode == 2
    assert "newsletter.state: cannot open" in result.stderr


def test_ses_failures_keep_addresses_out_of_the_logs(buzz: Buzz, demo: Path, ses_env: str) -> None:
    """Every recipient rejected (unverified sender): exit 3, and no address in any log line."""
    config = demo / "buzz.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "ses"'))
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_SESV2": ses_env,
        "BUZZ_UNSUBSCRIBE_SECRET": "s3cret-for-tests",
    }
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    result = buzz("run", env=env)
    assert result.returncode == 3, result.stderr
    assert "recipient_failed" in result.stderr
    assert "@" not in result.stderr
    assert "s3cret-for-tests" not in result.stderr


def test_marketing_can_break_and_force_a_pair_then_rebuild(buzz: Buzz, demo: Path) -> None:
    """`buzz unpair` splits a story in two at the next build; `buzz pair` joins it again."""
    assert buzz("fetch").returncode == 0
    assert "4 stories (en 4, fr 4)" in buzz("build").stdout
    en, fr = "https://blog.example.com/?p=4377", "https://blog.example.com/?p=4384"
    unpaired = buzz("unpair", en, fr)
    assert unpaired.returncode == 0, unpaired.stderr
    assert "will never be paired" in unpaired.stdout
    assert "5 stories (en 4, fr 4)" in buzz("build").stdout  # both older than the grace period
    assert buzz("pair", en, fr).returncode == 0
    assert "4 stories (en 4, fr 4)" in buzz("build").stdout
    same_language = buzz("pair", en, "https://blog.example.com/?p=4401")
    assert same_language.returncode == 2
    assert "needs two languages" in same_language.stderr
    assert buzz("pair", en, "nope").returncode == 2


def test_explain_says_why_each_related_post_was_chosen(buzz: Buzz) -> None:
    """`buzz explain` lists each story's related posts with their score and reasons."""
    assert buzz("fetch").returncode == 0
    assert buzz("build").returncode == 0
    result = buzz("explain", "--lang", "en")
    assert result.returncode == 0, result.stderr
    assert "Self-Service That Users Actually Use" in result.stdout
    assert "text similarity" in result.stdout
    assert "shared: " in result.stdout
    assert "[fr]" not in result.stdout


def test_marketing_adjusts_a_draft_through_its_file(buzz: Buzz, demo: Path) -> None:
    """draft.toml changes subject, intro, order and exclusions; they survive rebuilds; a bad
    edit is one line naming the file and key, and changes nothing."""
    assert buzz("fetch").returncode == 0
    assert buzz("build").returncode == 0
    [folder] = (demo / "var" / "out" / "editions").iterdir()
    draft_file = folder / "draft.toml"
    text = draft_file.read_text()
    assert '"https://blog.example.com/?p=4401",  # Live Chat' in text
    text = text.replace(
        '[en]\nsubject = ""\nintro = ""',
        '[en]\nsubject = "This week: {title}"\nintro = "A word from the editor."',
    )
    text = text.replace("exclude = []", 'exclude = ["https://blog.example.com/?p=4352"]')
    text = text.replace("order = [\n", 'order = [\n  "https://blog.example.com/?p=4331",\n')
    draft_file.write_text(text)
    for _ in range(2):  # the adjustments survive a rebuild
        built = buzz("build")
        assert "3 stories (en 3, fr 3)" in built.stdout, built.stderr
        edition = json.loads((folder / "edition.json").read_text())
        assert edition["stories"][0]["en"]["guid"] == "https://blog.example.com/?p=4331"
        assert "A word from the editor." in (folder / "en.html").read_text()
        assert "A word from the editor." not in (folder / "fr.html").read_text()
        message = email.message_from_bytes(
            (folder / "en.eml").read_bytes(), policy=email.policy.default
        )
        assert (
            message["Subject"]
            == "This week: MFA Fatigue & Passkeys: Closing the Gaps Attackers Exploit"
        )
    draft_file.write_text(text.replace("[fr]", "[fr]\nsubjet = 1"))
    broken = buzz("build")
    assert broken.returncode == 2
    assert _said(broken.stderr) == [f"buzz: {draft_file.resolve()}: fr.subjet: unknown key"]


def test_a_draft_edited_after_its_build_is_not_sent_until_rebuilt(buzz: Buzz, demo: Path) -> None:
    """A send or proof of a draft whose draft.toml changed since the build is refused (exit 2,
    nothing sent): the change would be silently ignored; after `buzz build` it goes."""
    draft_file = built_draft(buzz, demo)
    folder = draft_file.parent
    draft_file.write_text(
        draft_file.read_text().replace(
            "exclude = []", 'exclude = ["https://blog.example.com/?p=4352"]'
        )
    )
    for command in (("send", "--yes"), ("send", "--test", "me@example.com")):
        refused = buzz(*command)
        assert refused.returncode == 2, refused.stderr
        assert _said(refused.stderr) == [
            f"buzz: {draft_file.resolve()} changed after edition {folder.name} was built: "
            "run 'buzz build' to apply it (and look at the previews), then send"
        ]
    assert not (demo / "var" / "out" / "outbox").exists()
    assert "3 stories" in buzz("build").stdout
    sent = buzz("send", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert _emails(demo / "var" / "out" / "outbox" / folder.name)["en"]


def test_approval_mode_proofs_to_reviewers_and_waits(buzz: Buzz, demo: Path) -> None:
    """With require_approval, `buzz run` builds, proofs to the reviewers, and sends nothing;
    the edition is `proofed` until marketing sends it."""
    config = demo / "buzz.toml"
    config.write_text(
        config.read_text().replace(
            "require_approval = false",
            'require_approval = true\nreviewers = ["editor@example.com"]',
        )
    )
    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    result = buzz("run")
    assert result.returncode == 0, result.stderr
    assert "Approval required" in result.stdout
    status = json.loads(buzz("status", "--json").stdout)
    [edition] = status["editions"]
    assert edition["state"] == "proofed"
    assert edition["languages"] == {}
    outbox = demo / "var" / "out" / "outbox" / edition["id"]
    assert sorted(p.parent.name for p in outbox.rglob("*.eml")) == ["en", "fr"]
    assert all("proofs" in str(p) for p in outbox.rglob("*.eml"))
    assert status["runs"][0]["outcome"] == "awaiting_approval"
    sent = buzz("send", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(buzz("status", "--json").stdout)["editions"][0]["state"] == "sent"


def test_failed_recipients_can_be_retried_once_the_cause_is_fixed(buzz: Buzz, demo: Path) -> None:
    """--retry-failed sends again to the recipients that failed, and only to them."""
    from pipeline.config import load
    from pipeline.store import Store

    assert buzz("subscribers", "import", "demo/subscribers.csv").returncode == 0
    assert buzz("run").returncode == 0
    settings = load(demo / "buzz.toml")
    store = Store(settings.state_path)
    [(edition_id, _)] = store.editions()
    raj = Recipient("raj.patel@example.org", "en")
    store.mark(edition_id, raj, DeliveryState.FAILED, error="MessageRejected")
    store.set_edition_state(edition_id, EditionState.PARTIAL)
    outbox = demo / "var" / "out" / "outbox" / edition_id / "en"
    before = {p.name: p.stat().st_mtime_ns for p in outbox.iterdir()}
    retried = buzz("send", edition_id, "--retry-failed", "--yes")
    assert retried.returncode == 0, retried.stderr
    assert "1 failed recipient(s) will be tried again" in retried.stdout
    after = {p.name: p.stat().st_mtime_ns for p in outbox.iterdir()}
    assert sum(before[name] != after[name] for name in before) == 1
    assert json.loads(buzz("status", "--json").stdout)["editions"][0]["state"] == "sent"


def test_a_refused_account_exits_1_and_marks_nothing_sent(buzz: Buzz, demo: Path) -> None:
    """SES says sending is paused: exit 1, one line, every recipient still pending."""
    from tests.ses_standin import SesStandIn

    config = demo / "buzz.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "ses"'))
    with SesStandIn(max_send_rate=50) as ses:
        ses.pause()
        env = ses_environment(ses.url)
        assert buzz("subscribers", "import", "demo/subscribers.csv", env=env).returncode == 0
        result = buzz("run", env=env)
    assert result.returncode == 1
    assert "SES refused the account: SendingPausedException" in result.stderr
    status = json.loads(buzz("status", "--json", env=env).stdout)
    en = status["editions"][0]["languages"]["en"]
    assert (en["sent"], en["pending"]) == (0, 5)
    assert status["runs"][0]["exit_code"] == 1


def test_an_unsubscribe_link_token_unsubscribes_its_address(buzz: Buzz, demo: Path) -> None:
    """The token of a sample message's link unsubscribes that address; a forged one is refused."""
    env = {"BUZZ_UNSUBSCRIBE_SECRET": "s3cret"}
    assert buzz("subscribers", "import", "demo/subscribers.csv", env=env).returncode == 0
    from pipeline.audience import Signer

    token = Signer("s3cret").token("raj.patel@example.org")
    done = buzz("subscribers", "unsubscribe", "--token", token, env=env)
    assert done.returncode == 0, done.stderr
    assert "raj.patel@example.org is unsubscribed" in done.stdout
    forged = Signer("other").token("mei.wong@example.com")
    refused = buzz("subscribers", "unsubscribe", "--token", forged, env=env)
    assert refused.returncode == 2
    assert "not valid" in refused.stderr

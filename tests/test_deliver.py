"""Tests for pipeline.deliver: the ledger-driven send loop, the outbox, and SES via moto."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from structlog.testing import capture_logs

from pipeline import config
from pipeline.audience import LocalAudience, Signer
from pipeline.deliver import (
    ATTEMPTS,
    BreakerPolicy,
    SendReport,
    send_language,
)
from pipeline.errors import BreakerTripped, DeliveryError, ExitCode
from pipeline.models import DeliveryState, Edition, Recipient
from pipeline.run import Job
from pipeline.store import Store, Subscriber
from pipeline.transport import (
    OutboxTransport,
    QuotaReached,
    Rejected,
    SesTransport,
    Transient,
    _classify,
    short_hash,
)
from tests.ses_standin import SesStandIn

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FROM = b"From: IT Buzz <buzz@news.example.com>\r\n"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.sqlite")
    store.save_draft(Edition("e1", NOW, ("en",), ()))
    store.upsert_subscribers(
        [Subscriber(f"r{i}@example.com", "en", "form", "2026-01-01") for i in range(5)], NOW
    )
    return store


def _audience(store: Store) -> LocalAudience:
    return LocalAudience(store, "https://example.com/u?token={token}", lambda: Signer("k"))


def _message(recipient: Recipient) -> bytes:
    return FROM + f"To: {recipient.email}\r\nSubject: hi\r\n\r\nbody\r\n".encode()


def test_outbox_send_reaches_everyone_once(store: Store, tmp_path: Path) -> None:
    """Every subscriber gets one .eml; running again sends nothing more."""
    outbox = OutboxTransport(tmp_path / "outbox")
    report = send_language(store, "e1", "en", _audience(store), outbox, _message)
    assert report.counts["sent"] == 5
    files = sorted((tmp_path / "outbox" / "en").iterdir())
    assert [f.name for f in files] == sorted(
        f"{short_hash(f'r{i}@example.com')}.eml" for i in range(5)
    )
    again = send_language(store, "e1", "en", _audience(store), outbox, _message)
    assert again.attempted == 0
    assert again.counts["sent"] == 5


def test_resume_after_a_crash_sends_only_what_was_never_sent(store: Store, tmp_path: Path) -> None:
    """A row left `sending` is in doubt and not resent; pending rows are sent."""
    store.freeze_audience("e1", "en", _audience(store).recipients("en"))
    store.mark("e1", Recipient("r0@example.com", "en"), DeliveryState.SENT, message_id="m0")
    store.mark("e1", Recipient("r1@example.com", "en"), DeliveryState.SENDING)  # died here
    outbox = OutboxTransport(tmp_path / "outbox")
    report = send_language(store, "e1", "en", _audience(store), outbox, _message)
    assert report.attempted == 3
    assert report.counts["sent"] == 4
    assert report.counts["in_doubt"] == 1
    assert not (tmp_path / "outbox" / "en" / f"{short_hash('r1@example.com')}.eml").exists()
    resend = send_language(
        store, "e1", "en", _audience(store), outbox, _message, resend_in_doubt=True
    )
    assert resend.attempted == 1
    assert resend.counts["sent"] == 5


def test_an_unsubscribe_after_the_freeze_is_honoured(store: Store, tmp_path: Path) -> None:
    """Someone who unsubscribes between the freeze and their turn is skipped."""
    store.freeze_audience("e1", "en", _audience(store).recipients("en"))
    store.unsubscribe("r3@example.com", NOW)
    report = send_language(
        store, "e1", "en", _audience(store), OutboxTransport(tmp_path / "o"), _message
    )
    assert report.counts["skipped"] == 1
    assert report.counts["sent"] == 4


def _moto_messages(base: str) -> list[dict[str, object]]:
    data = json.load(urllib.request.urlopen(f"{base}/moto-api/data.json"))
    return data["ses"]["RawMessage"]  # type: ignore[no-any-return]


def test_ses_send_through_a_real_http_endpoint(store: Store, ses_env: str) -> None:
    """SES v2 SendEmail with raw MIME: each recipient once, with SES's message id recorded."""
    boto3.client("sesv2", region_name="ca-central-1").create_email_identity(
        EmailIdentity="news.example.com"
    )
    report = send_language(
        store, "e1", "en", _audience(store), SesTransport("ca-central-1"), _message, max_rate=100
    )
    assert report.counts["sent"] == 5
    sent = _moto_messages(ses_env)
    assert sorted({m["destinations"][0] for m in sent}) == [f"r{i}@example.com" for i in range(5)]  # type: ignore[index]
    assert len(sent) == 5


def test_ses_rejection_fails_that_recipient_and_the_send_goes_on(
    store: Store, ses_env: str
) -> None:
    """MessageRejected (unverified sender) is permanent: failed, recorded, not retried."""
    report = send_language(
        store, "e1", "en", _audience(store), SesTransport("ca-central-1"), _message, max_rate=100
    )
    assert report.counts["failed"] == 5
    assert report.attempted == 5
    with pytest.raises(Rejected, match="MessageRejected"):
        SesTransport("ca-central-1").send(
            Recipient("x@example.com", "en"), _message(Recipient("x@example.com", "en"))
        )


def test_ses_unreachable_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint listening: a transient error, safe to retry (the message never left)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", "http://127.0.0.1:9")
    recipient = Recipient("x@example.com", "en")
    with pytest.raises(Transient, match="cannot reach SES"):
        SesTransport("ca-central-1").send(recipient, _message(recipient))


def test_a_message_that_cannot_be_built_fails_alone(store: Store, tmp_path: Path) -> None:
    """One recipient whose message cannot be built is failed; the others are sent."""

    def make(recipient: Recipient) -> bytes:
        if recipient.email == "r2@example.com":
            raise ValueError("cannot encode")
        return _message(recipient)

    report = send_language(store, "e1", "en", _audience(store), OutboxTransport(tmp_path), make)
    assert report.counts["failed"] == 1
    assert report.counts["sent"] == 4


def test_a_rejection_is_not_retried(store: Store, ses_env: str) -> None:
    """MessageRejected costs exactly one HTTP request per recipient."""
    transport = SesTransport("ca-central-1")
    requests: list[str] = []
    transport.client.meta.events.register(
        "before-send.sesv2.SendEmail", lambda **kwargs: requests.append("send")
    )
    report = send_language(store, "e1", "en", _audience(store), transport, _message, max_rate=100)
    assert report.counts["failed"] == 5
    assert len(requests) == 5


def test_quota_and_throttling_are_told_apart_from_rejections() -> None:
    """Daily quota: stop and resume later; throttling and 5xx: retry; the rest: reject."""
    from botocore.exceptions import ClientError

    def error(code: str, status: int, message: str = "") -> ClientError:
        response = {"Error": {"Code": code, "Message": message},
                    "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
        return ClientError(response, "SendEmail")  # type: ignore[arg-type]

    assert isinstance(
        _classify(error("LimitExceededException", 400, "Daily message quota exceeded")),
        QuotaReached,
    )
    assert isinstance(
        _classify(error("TooManyRequestsException", 429, "Maximum sending rate exceeded.")),
        Transient,
    )
    assert isinstance(_classify(error("InternalFailure", 500)), Transient)
    assert isinstance(
        _classify(error("MessageRejected", 400, "Email address is not verified.")), Rejected
    )
    assert isinstance(_classify(error("SendingPausedException", 400)), DeliveryError)


@pytest.mark.parametrize(
    ("code", "status", "message", "kind", "throttled"),
    [
        ("TooManyRequestsException", 429, "Slow down.", Transient, True),
        ("ThrottlingException", 400, "Daily message quota exceeded.", Transient, True),
        ("Throttling", 400, "", Transient, True),
        ("SomethingNew", 429, "", Transient, True),
        ("LimitExceededException", 400, "Whatever it says.", QuotaReached, False),
        ("ServiceUnavailable", 503, "Maximum sending rate exceeded.", Transient, False),
        ("BadRequestException", 400, "Maximum sending rate exceeded; quota", Rejected, False),
    ],
)
def test_errors_are_told_apart_by_code_and_status_never_by_message(
    code: str, status: int, message: str, kind: type, throttled: bool
) -> None:
    """The provider's code and HTTP status decide; the words of its message never do."""
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
    found = _classify(ClientError(response, "SendEmail"))  # type: ignore[arg-type]
    assert type(found) is kind
    assert getattr(found, "throttled", False) is throttled


def test_provider_messages_never_carry_an_address_into_the_ledger(
    store: Store, ses_env: str
) -> None:
    """SES quotes addresses in its errors; the ledger and logs keep only a hash."""
    send_language(
        store, "e1", "en", _audience(store), SesTransport("ca-central-1"), _message, max_rate=100
    )
    errors = [row[0] for row in store.db.execute("SELECT last_error FROM deliveries")]
    assert errors
    assert all("@" not in error for error in errors)


# Against the local SES stand-in: the real boto3 client, a real HTTP endpoint --------------------


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch) -> Iterator[SesStandIn]:
    """A fresh SES stand-in, with the standard AWS chain pointed at it."""
    with SesStandIn(max_send_rate=50, latency_s=0.01) as standin:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", standin.url)
        yield standin


def _crowd(store: Store, count: int) -> None:
    store.upsert_subscribers(
        [Subscriber(f"p{i:04d}@example.com", "en", "form", "2026-01-01") for i in range(count)],
        NOW,
    )


def _send(store: Store, **options: object) -> SendReport:
    transport = SesTransport("ca-central-1", connections=16)
    return send_language(
        store,
        "e1",
        "en",
        _audience(store),
        transport,
        _message,
        workers=16,
        **options,  # type: ignore[arg-type]
    )


def test_the_account_rate_is_used_and_never_exceeded(store: Store, ses: SesStandIn) -> None:
    """GetAccount's MaxSendRate paces 16 senders: no throttling, no second in which SES saw
    more than its rate, and each recipient exactly once."""
    _crowd(store, 95)
    started = time.monotonic()
    report = _send(store)
    elapsed = time.monotonic() - started
    assert report.counts["sent"] == 100
    assert ses.throttled == 0
    assert ses.max_rate_seen() <= 50
    assert elapsed >= 100 / 50 - 0.5
    assert all(ses.sent_to(f"p{i:04d}@example.com") == 1 for i in range(95))


def test_a_lower_configured_cap_wins(store: Store, ses: SesStandIn) -> None:
    """delivery.max_send_rate below the account's rate (50/s) is the pace."""
    _crowd(store, 25)
    started = time.monotonic()
    _send(store, max_rate=10)
    assert ses.max_rate_seen() <= 10
    assert time.monotonic() - started >= 30 / 10 - 0.6
    assert len(ses.messages) == 30


def test_throttling_and_server_errors_are_retried_without_duplicates(
    store: Store, ses: SesStandIn
) -> None:
    """429s and 503s are retried with backoff; every recipient still gets exactly one."""
    _crowd(store, 15)
    ses.fail_next("TooManyRequestsException", count=3)
    ses.fail_next("ServiceUnavailable", count=2)
    report = _send(store)
    assert report.counts["sent"] == 20
    assert len(ses.messages) == 20
    assert len({message.recipients for message in ses.messages}) == 20


def test_the_daily_quota_stops_the_send_and_the_next_run_resumes(
    store: Store, ses: SesStandIn
) -> None:
    """With 8 messages left in the day, 8 go, the rest stay pending (exit 75); later, the rest."""
    _crowd(store, 15)
    ses.max_24h, ses.sent_last_24h = 100, 92
    with pytest.raises(QuotaReached):
        _send(store)
    counts = store.delivery_counts("e1")["en"]
    assert (counts["sent"], counts["pending"], counts["sending"]) == (8, 12, 0)
    ses.max_24h = 1000
    _send(store)
    assert store.delivery_counts("e1")["en"]["sent"] == 20
    assert len(ses.messages) == 20


def test_a_paused_account_stops_everything_and_marks_nothing_sent(
    store: Store, ses: SesStandIn
) -> None:
    """SendingPausedException: the send stops with DeliveryError; no row claims a send."""
    _crowd(store, 15)
    ses.pause()
    with pytest.raises(DeliveryError, match="SendingPaused"):
        _send(store)
    counts = store.delivery_counts("e1")["en"]
    assert counts["sent"] == 0
    assert counts["pending"] == 20
    assert ses.messages == []


def test_an_answer_lost_after_acceptance_is_in_doubt_and_not_resent(
    store: Store, ses: SesStandIn
) -> None:
    """SES took the message but the answer never came: in doubt, not retried, reported; resent
    only with resend_in_doubt."""
    _send(store, max_rate=1000)  # warm: one connection kept alive per thread
    ses.messages.clear()
    store.save_draft(Edition("e2", NOW, ("en",), ()))
    ses.drop_after_accept(count=1)
    report = send_language(store, "e2", "en", _audience(store), SesTransport("ca-central-1"),
                           _message, workers=1)  # fmt: skip
    assert report.counts["in_doubt"] == 1
    assert report.counts["sent"] == 4
    assert len(ses.messages) == 5  # the in-doubt one did go out
    again = send_language(store, "e2", "en", _audience(store), SesTransport("ca-central-1"),
                          _message, workers=1)  # fmt: skip
    assert again.attempted == 0


# Bad weather: random throttling and 5xx, requeues, the circuit breaker ------------------------


def _each_once(ses: SesStandIn, store: Store) -> None:
    """Every recipient of the ledger is sent, and SES accepted exactly one message for each."""
    addresses = [row[0] for row in store.db.execute("SELECT email FROM deliveries")]
    assert [ses.sent_to(address) for address in addresses] == [1] * len(addresses)
    assert len(ses.messages) == len(addresses)


def test_a_storm_delivers_everyone_exactly_once(store: Store, ses: SesStandIn) -> None:
    """30 % of calls answered 429 and 2 % 500 at random: 300 recipients, each sent exactly once,
    none pending or in doubt, every failed call counted."""
    _crowd(store, 295)
    ses.max_send_rate = 400
    ses.storm(throttle=0.3, errors=0.02, seed=10)
    report = _send(store)
    counts = report.counts
    assert (counts["sent"], counts["pending"], counts["in_doubt"], counts["sending"]) == (
        300, 0, 0, 0)  # fmt: skip
    _each_once(ses, store)
    assert ses.stormed >= 60
    assert report.stats.transient == ses.stormed + ses.throttled
    assert report.stats.attempts == len(ses.messages) + report.stats.transient
    assert report.stats.breaker is None


def test_a_recipient_out_of_attempts_goes_back_to_the_queue(store: Store, ses: SesStandIn) -> None:
    """ATTEMPTS throttled calls to one recipient: it goes back to the queue, the others are
    sent, and the next pass sends it; its ledger row counts every call."""
    ses.fail_next("TooManyRequestsException", count=ATTEMPTS, to="r2@example.com")
    with capture_logs() as logs:
        report = _send(store)
    assert report.counts["sent"] == 5
    _each_once(ses, store)
    assert (report.stats.passes, report.stats.requeued) == (2, 1)
    attempts = store.db.execute(
        "SELECT attempts FROM deliveries WHERE email = 'r2@example.com'"
    ).fetchone()[0]
    assert attempts == ATTEMPTS + 1
    assert [e["requeued"] for e in logs if e["event"] == "send_pass_finished"] == [1]


def test_the_breaker_stops_a_send_when_nothing_is_answered(store: Store, ses: SesStandIn) -> None:
    """Every call answered 500 for longer than breaker_quiet_s: BreakerTripped (exit 75), every
    recipient still pending, none in doubt, and the event says why."""
    ses.storm(throttle=0, errors=1.0)
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(BreakerTripped, match="no call answered"):
        _send(store, breaker=BreakerPolicy(quiet_s=1.0, failure_ratio=0.9, window=100_000))
    assert time.monotonic() - started < 5
    counts = store.delivery_counts("e1")["en"]
    assert (counts["pending"], counts["in_doubt"], counts["sending"], counts["sent"]) == (
        5, 0, 0, 0)  # fmt: skip
    assert BreakerTripped("x").exit_code == ExitCode.TEMPFAIL
    finished = next(e for e in logs if e["event"] == "send_finished")
    assert finished["breaker_tripped"] is True
    assert finished["breaker_reason"] == "quiet"
    assert finished["attempts"] == finished["transient_failures"] >= 5
    assert finished["failure_ratio"] == 1.0
    assert finished["passes"] >= 1


def test_a_slow_pace_alone_never_trips_the_breaker(store: Store, ses: SesStandIn) -> None:
    """One message a second and breaker_quiet_s 0.5 s: nothing failing, nothing tripped."""
    report = _send(store, max_rate=2, breaker=BreakerPolicy(quiet_s=0.5, failure_ratio=0.9,
                                                             window=50))  # fmt: skip
    assert report.counts["sent"] == 5
    assert report.stats.breaker is None


def test_the_breaker_stops_a_send_on_a_sustained_failure_ratio(
    store: Store, ses: SesStandIn
) -> None:
    """Of the last 20 calls, at least 90 % throttled: the send stops at once with the rest
    pending; the event gives the figures."""
    _crowd(store, 45)
    ses.storm(throttle=0.95, errors=0.0, seed=1)
    with capture_logs() as logs, pytest.raises(BreakerTripped, match="of the last 20 calls"):
        _send(store, breaker=BreakerPolicy(quiet_s=600, failure_ratio=0.9, window=20))
    counts = store.delivery_counts("e1")["en"]
    assert counts["pending"] + counts["sent"] == 50
    assert (counts["in_doubt"], counts["sending"]) == (0, 0)
    assert counts["sent"] == len(ses.messages)
    finished = next(e for e in logs if e["event"] == "send_finished")
    assert finished["breaker_reason"] == "failure_ratio"
    assert finished["throttled"] == finished["transient_failures"] >= 18


def test_throttled_to_a_standstill_by_a_used_up_quota_is_quota_reached(
    store: Store, ses: SesStandIn
) -> None:
    """Every call throttled and GetAccount then says the day's quota is used: QuotaReached."""
    ses.max_24h = 1000
    ses.storm(throttle=1.0, errors=0.0)
    threading.Timer(0.3, lambda: setattr(ses, "sent_last_24h", 1000)).start()
    with pytest.raises(QuotaReached):
        _send(store, breaker=BreakerPolicy(quiet_s=1.0, failure_ratio=0.9, window=100_000))
    assert store.delivery_counts("e1")["en"]["pending"] == 5


def test_the_dry_run_predicts_the_real_send_s_duration(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At an account rate of 5/s, a dry run's predicted duration (`Job.rehearse`) is within
    10 % of the real send's that follows."""
    path = demo / "buzz.toml"
    path.write_text(path.read_text().replace('transport = "outbox"', 'transport = "ses"'))
    settings = config.load(path)
    with SesStandIn(max_send_rate=5, latency_s=0.01) as ses:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", ses.url)
        monkeypatch.setenv("BUZZ_UNSUBSCRIBE_SECRET", "test-secret")
        store = Store(settings.state_path)
        _crowd(store, 20)
        job = Job(settings, store)
        job.fetch()
        built = job.build()
        assert built is not None
        rehearsal = Job(settings, Store(settings.state_path, rehearsal=True)).rehearse(
            built.edition, ["en"]
        )
        assert rehearsal.would_send == {"en": 20}
        assert rehearsal.seconds is not None
        started = time.monotonic()
        job.send(built.edition, ["en"])
        elapsed = time.monotonic() - started
    assert len(ses.messages) == 20
    assert abs(elapsed - rehearsal.seconds) <= 0.1 * rehearsal.seconds

"""Tests for tests.ses_standin: the real boto3 `sesv2` client against the local SES stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from tests.ses_standin import SesStandIn

pytestmark = pytest.mark.timeout(20)

RAW = (
    b"From: IT Buzz <news@example.org>\r\nTo: ada@example.org\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n"
    b"List-Unsubscribe: <https://example.org/u/1>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nCaf\xc3\xa9 \xe2\x98\x95 \x00\xff\r\n"
)
Client = Any  # mypy_boto3_sesv2.SESV2Client, kept loose for the tests
MakeClient = Callable[..., Client]


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch) -> Iterator[SesStandIn]:
    """A running stand-in, with dummy credentials and the endpoint in the environment."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    with SesStandIn() as standin:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", standin.url)
        yield standin


@pytest.fixture
def make_client(ses: SesStandIn) -> MakeClient:
    """Build a real sesv2 client that makes exactly one HTTP request per call."""

    def make(read_timeout: float = 5.0) -> Client:
        config = Config(
            retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=read_timeout
        )
        return boto3.session.Session().client("sesv2", region_name="ca-central-1", config=config)

    return make


@pytest.fixture
def client(make_client: MakeClient) -> Client:
    """One client."""
    return make_client()


def send_raw(client: Client, to: str = "ada@example.org", data: bytes = RAW, **extra: Any) -> str:
    answer = client.send_email(
        Destination={"ToAddresses": [to]}, Content={"Raw": {"Data": data}}, **extra
    )
    return str(answer["MessageId"])


def error_of(call: Callable[[], object]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response: Any = caught.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_get_account_returns_the_configured_quota(ses: SesStandIn, client: Client) -> None:
    """GetAccount answers the configured quota, rate and sent count, and sending is enabled."""
    ses.max_send_rate, ses.max_24h, ses.sent_last_24h = 14.0, 50_000.0, 123.0
    account = client.get_account()
    assert account["SendQuota"] == {
        "Max24HourSend": 50_000.0,
        "MaxSendRate": 14.0,
        "SentLast24Hours": 123.0,
    }
    assert account["SendingEnabled"] is True
    assert account["ProductionAccessEnabled"] is True
    assert account["EnforcementStatus"] == "HEALTHY"


def test_sent_last_24h_grows_with_each_accepted_message(ses: SesStandIn, client: Client) -> None:
    """Each accepted SendEmail adds one to SentLast24Hours."""
    send_raw(client)
    send_raw(client, to="bob@example.org")
    assert client.get_account()["SendQuota"]["SentLast24Hours"] == 2.0


def test_raw_send_is_recorded_with_the_decoded_bytes(ses: SesStandIn, client: Client) -> None:
    """A Raw send is recorded byte for byte, with its recipient, headers and options."""
    lmo = {"ContactListName": "buzz", "TopicName": "en"}
    message_id = send_raw(client, ConfigurationSetName="buzz-set", ListManagementOptions=lmo)
    [sent] = ses.messages
    assert sent.message_id == message_id
    assert sent.raw == RAW
    assert sent.recipients == ("ada@example.org",)
    assert sent.header("list-unsubscribe") == "<https://example.org/u/1>"
    assert sent.list_management == lmo
    assert sent.configuration_set == "buzz-set"
    assert sent.simple is None
    assert ses.sent_to("ADA@example.org") == 1


def test_raw_send_without_destination_takes_the_to_header(ses: SesStandIn, client: Client) -> None:
    """A Raw send without Destination goes to the message's To header, as in SES."""
    client.send_email(Content={"Raw": {"Data": RAW}})
    assert ses.messages[0].recipients == ("ada@example.org",)


def test_simple_send_is_recorded_with_its_parts(ses: SesStandIn, client: Client) -> None:
    """A Simple send is recorded with its subject, text, HTML and custom headers."""
    client.send_email(
        FromEmailAddress="news@example.org",
        Destination={"ToAddresses": ["ada@example.org"], "BccAddresses": ["log@example.org"]},
        Content={
            "Simple": {
                "Subject": {"Data": "Café"},
                "Body": {"Text": {"Data": "texte ☕"}, "Html": {"Data": "<p>☕</p>"}},
                "Headers": [{"Name": "X-Buzz-Edition", "Value": "2026-10"}],
            }
        },
    )
    [sent] = ses.messages
    assert sent.simple == {"Subject": "Café", "Text": "texte ☕", "Html": "<p>☕</p>"}
    assert sent.headers == [("X-Buzz-Edition", "2026-10")]
    assert sent.recipients == ("ada@example.org", "log@example.org")
    assert sent.from_address == "news@example.org"
    assert sent.raw is None


def test_message_ids_are_unique(ses: SesStandIn, client: Client) -> None:
    """Every accepted send gets its own MessageId."""
    ids = {send_raw(client) for _ in range(5)}
    assert len(ids) == 5


def test_exceeding_the_rate_is_a_429_and_not_recorded(ses: SesStandIn, client: Client) -> None:
    """A send beyond MaxSendRate within one second is a 429 TooManyRequestsException."""
    ses.max_send_rate = 2
    send_raw(client)
    send_raw(client)
    code, status, message = error_of(lambda: send_raw(client))
    assert (code, status, message) == (
        "TooManyRequestsException",
        429,
        "Maximum sending rate exceeded.",
    )
    assert len(ses.messages) == 2
    assert ses.throttled == 1


def test_the_rate_window_slides(ses: SesStandIn, client: Client) -> None:
    """Once a second has passed since a send, its slot is free again."""
    ses.max_send_rate = 1
    send_raw(client)
    time.sleep(1.05)
    send_raw(client)
    assert len(ses.messages) == 2
    assert ses.throttled == 0


def test_the_daily_quota_gives_limit_exceeded(ses: SesStandIn, client: Client) -> None:
    """Once SentLast24Hours reaches Max24HourSend, sends fail with LimitExceededException."""
    ses.max_24h, ses.sent_last_24h = 3.0, 2.0
    send_raw(client)
    assert error_of(lambda: send_raw(client)) == (
        "LimitExceededException",
        400,
        "Daily message quota exceeded.",
    )
    assert len(ses.messages) == 1


def test_an_unlimited_daily_quota_never_runs_out(ses: SesStandIn, client: Client) -> None:
    """Max24HourSend -1 means no daily quota."""
    ses.max_24h, ses.sent_last_24h = -1.0, 1e9
    send_raw(client)
    assert len(ses.messages) == 1


def test_pause_gives_sending_paused(ses: SesStandIn, client: Client) -> None:
    """A paused account answers SendingPausedException and GetAccount shows it disabled."""
    ses.pause()
    assert error_of(lambda: send_raw(client))[:2] == ("SendingPausedException", 400)
    assert client.get_account()["SendingEnabled"] is False
    ses.pause(False)
    send_raw(client)
    assert len(ses.messages) == 1


def test_reject_gives_message_rejected(ses: SesStandIn, client: Client) -> None:
    """A rejected recipient gets MessageRejected; others still go through."""
    ses.reject("Bad@Example.org")
    assert error_of(lambda: send_raw(client, to="bad@example.org"))[:2] == ("MessageRejected", 400)
    send_raw(client, to="good@example.org")
    assert ses.sent_to("bad@example.org") == 0
    assert ses.sent_to("good@example.org") == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
        ("AccountSuspendedException", 400),
        ("MailFromDomainNotVerifiedException", 400),
        ("TooManyRequestsException", 429),
    ],
)
def test_fail_next_injects_the_error(
    ses: SesStandIn, client: Client, code: str, status: int
) -> None:
    """fail_next makes the next calls fail with that code and status, unrecorded."""
    ses.fail_next(code, count=2)
    assert error_of(lambda: send_raw(client))[:2] == (code, status)
    assert error_of(lambda: send_raw(client))[:2] == (code, status)
    send_raw(client)
    assert len(ses.messages) == 1


def test_drop_after_accept_is_recorded_but_unanswered(ses: SesStandIn, client: Client) -> None:
    """drop_after_accept records the send, then boto3 raises ConnectionClosedError."""
    send_raw(client, to="first@example.org")  # so that the dropped one reuses a connection
    ses.drop_after_accept()
    with pytest.raises(ConnectionClosedError):
        send_raw(client, to="ada@example.org")
    assert ses.sent_to("ada@example.org") == 1
    send_raw(client, to="after@example.org")
    assert len(ses.messages) == 3


def test_hang_next_is_recorded_but_answered_too_late(
    ses: SesStandIn, make_client: MakeClient
) -> None:
    """hang_next records the send, then boto3 raises ReadTimeoutError."""
    client = make_client(read_timeout=0.3)
    ses.hang_next(seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        send_raw(client)
    assert time.monotonic() - started < 0.9
    assert len(ses.messages) == 1
    send_raw(client)
    assert len(ses.messages) == 2


def _weather(ses: SesStandIn, client: Client, calls: int) -> list[str]:
    """The answer to each of `calls` sends: "ok" or the error code."""
    answers = []
    for n in range(calls):
        try:
            send_raw(client, to=f"w{n}@example.org")
            answers.append("ok")
        except ClientError as exc:
            answers.append(exc.response["Error"]["Code"])
    return answers


def test_a_storm_answers_its_shares_with_429_and_500(ses: SesStandIn, client: Client) -> None:
    """storm(0.3, 0.02) answers about 30 % of sends 429 and 2 % 500, records only the others."""
    ses.max_send_rate = 10_000
    ses.storm(throttle=0.3, errors=0.02, seed=7)
    answers = _weather(ses, client, 400)
    assert 0.22 <= answers.count("TooManyRequestsException") / 400 <= 0.38
    assert 1 <= answers.count("InternalFailure") <= 20
    assert len(ses.messages) == answers.count("ok") == 400 - ses.stormed


def test_a_storm_is_reproducible_and_can_end(ses: SesStandIn, client: Client) -> None:
    """The same seed draws the same answers; storm(0, 0) brings calm back."""
    ses.max_send_rate = 10_000
    ses.storm(seed=3)
    first = _weather(ses, client, 60)
    ses.storm(seed=3)
    assert _weather(ses, client, 60) == first
    ses.storm(0, 0)
    assert set(_weather(ses, client, 30)) == {"ok"}


def test_latency_delays_each_send(ses: SesStandIn, client: Client) -> None:
    """latency_s is added to every SendEmail."""
    ses.latency_s = 0.2
    started = time.monotonic()
    send_raw(client)
    assert time.monotonic() - started >= 0.2


def test_unknown_routes_are_not_found(ses: SesStandIn, client: Client) -> None:
    """An operation the stand-in does not implement is a 404 NotFoundException."""
    assert error_of(lambda: client.list_contact_lists())[:2] == ("NotFoundException", 404)
    assert ses.requests == 1


def test_raw_data_travels_base64_encoded(ses: SesStandIn, client: Client) -> None:
    """The stand-in decodes base64 itself: bytes that are not valid UTF-8 survive."""
    data = RAW + bytes(range(256))
    send_raw(client, data=data)
    assert ses.messages[0].raw == data


def _burst(make_client: MakeClient, threads: int, each: int) -> list[ClientError]:
    clients = [make_client() for _ in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[ClientError] = []

    def work(client: Client, n: int) -> None:
        barrier.wait()
        for k in range(each):
            try:
                send_raw(client, to=f"r{n}-{k}@example.org")
            except ClientError as exc:
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(c, n)) for n, c in enumerate(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    return errors


def _brute_max_rate(times: list[float]) -> int:
    return max((sum(t <= u < t + 1.0 for u in times) for t in times), default=0)


def test_max_rate_seen_under_a_throttled_burst(ses: SesStandIn, make_client: MakeClient) -> None:
    """8 threads bursting at MaxSendRate 10: 10 accepted per second at most, and seen so."""
    ses.max_send_rate = 10
    errors = _burst(make_client, threads=8, each=5)
    assert len(ses.messages) + ses.throttled == 40 == len(ses.messages) + len(errors)
    assert all(e.response["Error"]["Code"] == "TooManyRequestsException" for e in errors)
    assert ses.max_rate_seen() == 10 == _brute_max_rate([m.at for m in ses.messages])


def test_max_rate_seen_under_an_unthrottled_burst(ses: SesStandIn, make_client: MakeClient) -> None:
    """Without a rate limit, max_rate_seen counts the densest second of a burst."""
    ses.enforce_rate = False
    assert _burst(make_client, threads=8, each=10) == []
    times = [m.at for m in ses.messages]
    assert len(times) == 80
    assert ses.max_rate_seen() == _brute_max_rate(times)
    assert ses.max_rate_seen() == 80 or max(times) - min(times) >= 1.0

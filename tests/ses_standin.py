"""A local Amazon SES v2 stand-in (REST-JSON over HTTP) for what moto lacks.

The real boto3 `sesv2` client talks to it (`endpoint_url=` or `AWS_ENDPOINT_URL_SESV2`):
`GetAccount`, and `SendEmail` (Raw or Simple) with scripted trouble: a sliding one-second
sending rate (429), a daily quota, a paused account, rejected recipients, injected errors,
bad weather (`storm`: a seeded random share of calls answered 429 or 500), per-request latency,
and two ambiguous failures: recorded, then the connection drops (`drop_after_accept`) or the
answer comes too late (`hang_next`). Standard library only.

    with SesStandIn(max_send_rate=14) as ses:
        client = boto3.client("sesv2", endpoint_url=ses.url, ...)
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import itertools
import json
import random
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from socketserver import StreamRequestHandler
from types import TracebackType
from typing import Any

ACCOUNT_PATH = "/v2/email/account"
SEND_PATH = "/v2/email/outbound-emails"
# The HTTP status of the codes SES does not answer with 400 (e.g. LimitExceededException,
# SendingPausedException, AccountSuspendedException, MessageRejected, BadRequestException).
STATUS = {
    "TooManyRequestsException": 429,
    "NotFoundException": 404,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
}


class SesError(Exception):
    """An error answer: botocore reads `code` from the x-amzn-ErrorType header."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or STATUS.get(code, 400)


@dataclass(frozen=True)
class Sent:
    """One accepted SendEmail; `at` is its `time.monotonic()` of acceptance."""

    message_id: str
    recipients: tuple[str, ...]
    raw: bytes | None  # Raw content, decoded from base64
    simple: dict[str, str] | None  # Simple content: Subject, Text, Html (those present)
    custom_headers: list[tuple[str, str]]  # Simple's custom Headers
    list_management: dict[str, str] | None
    configuration_set: str | None
    from_address: str | None
    at: float

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The raw message's headers (parsed on demand), or Simple's custom Headers."""
        if self.raw is None:
            return self.custom_headers
        return list(BytesHeaderParser().parsebytes(self.raw).items())

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class SesStandIn:
    """The server and its state; a context manager that starts and stops it.

    Plain attributes, settable at any time: `max_send_rate` (a sliding one-second window,
    enforced unless `enforce_rate` is False), `max_24h` (-1: unlimited), `sent_last_24h`
    (one more per accepted message; SES counts recipients, the same for one-recipient
    messages), `latency_s` (added to every SendEmail). Read back: `messages`, `throttled`,
    `requests` (every HTTP request), `stormed` (calls the storm answered with an error),
    `max_rate_seen()`, `sent_to()`.
    """

    def __init__(
        self,
        *,
        max_send_rate: float = 14.0,
        max_24h: float = 50_000.0,
        sent_last_24h: float = 0.0,
        latency_s: float = 0.0,
        enforce_rate: bool = True,
        keep_content: bool = True,
    ) -> None:
        self.max_send_rate, self.max_24h, self.sent_last_24h = max_send_rate, max_24h, sent_last_24h
        self.latency_s, self.enforce_rate = latency_s, enforce_rate
        self.keep_content = keep_content  # False: record recipients only (long benchmarks)
        self.messages: list[Sent] = []  # accepted sends, in order
        self.throttled = self.requests = 0  # requests: every HTTP request, any route
        self.stormed = 0
        self._storm: tuple[float, float, random.Random] | None = None
        self.paused, self.rejected, self.url = False, set[str](), ""
        self._lock = threading.Lock()
        self._failures: deque[tuple[str, int | None]] = deque()  # scripted trouble, in order
        self._failures_to: dict[str, deque[tuple[str, int | None]]] = {}  # per address
        self._hangs: deque[float] = deque()
        self._drops = 0
        self._window: deque[float] = deque()  # acceptance times within the last second
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._server: _Server | None = None

    def fail_next(
        self, code: str, count: int = 1, status: int | None = None, to: str | None = None
    ) -> None:
        """The next `count` SendEmail calls (`to`: the next to that address) fail with `code`
        (not recorded)."""
        with self._lock:
            queue = (
                self._failures if to is None else self._failures_to.setdefault(to.lower(), deque())
            )
            queue.extend([(code, status)] * count)

    def reject(self, address: str) -> None:
        """SendEmail to `address` is refused for good with MessageRejected."""
        with self._lock:
            self.rejected.add(address.lower())

    def pause(self, paused: bool = True) -> None:
        """Every SendEmail answers SendingPausedException (`pause(False)` resumes)."""
        with self._lock:
            self.paused = paused

    def storm(self, throttle: float = 0.3, errors: float = 0.02, seed: int = 0) -> None:
        """From now on, a random share `throttle` of SendEmail calls is answered 429
        TooManyRequestsException and a share `errors` 500 InternalFailure (neither recorded),
        on top of the rate limit; the same seed draws the same sequence (`storm(0, 0)` ends
        it)."""
        with self._lock:
            self._storm = (throttle, errors, random.Random(seed)) if throttle or errors else None

    def drop_after_accept(self, count: int = 1) -> None:
        """The next `count` sends are recorded, then the connection closes unanswered."""
        with self._lock:
            self._drops += count

    def hang_next(self, count: int = 1, seconds: float = 2.0) -> None:
        """The next `count` sends are recorded, then answered only after `seconds`
        (make it longer than the client's read_timeout)."""
        with self._lock:
            self._hangs.extend([seconds] * count)

    def sent_to(self, address: str) -> int:
        """How many accepted messages went to `address` (any case)."""
        with self._lock:
            sent = list(self.messages)
        return sum(address.lower() in (r.lower() for r in m.recipients) for m in sent)

    def max_rate_seen(self) -> int:
        """The most accepted messages in any sliding one-second window."""
        with self._lock:
            times = sorted(m.at for m in self.messages)
        return max(
            (i + 1 - bisect.bisect_right(times, t - 1.0) for i, t in enumerate(times)), default=0
        )

    def account(self) -> dict[str, Any]:
        """The GetAccount answer."""
        with self._lock:
            return {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendingEnabled": not self.paused,
                "SendQuota": {
                    "Max24HourSend": self.max_24h,
                    "MaxSendRate": self.max_send_rate,
                    "SentLast24Hours": self.sent_last_24h,
                },
                "SuppressionAttributes": {"SuppressedReasons": []},
            }

    def send(self, request: dict[str, Any]) -> tuple[Sent, float | None]:
        """Accept (and record) one SendEmail or raise SesError; then the delay before the
        answer (None: close the connection unanswered)."""
        fields = _parse(request)
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        with self._lock:
            mine = [self._failures_to.get(r.lower()) for r in fields["recipients"]]
            scripted = next((q for q in [*mine, self._failures] if q), None)
            if scripted:
                code, status = scripted.popleft()
                raise SesError(code, f"Injected {code}.", status)
            if self.paused:
                raise SesError("SendingPausedException", "Sending is paused for this account.")
            refused = [r for r in fields["recipients"] if r.lower() in self.rejected]
            if refused:
                raise SesError("MessageRejected", f"Email address is rejected: {refused[0]}")
            if 0 <= self.max_24h <= self.sent_last_24h:
                raise SesError("LimitExceededException", "Daily message quota exceeded.")
            if self._storm is not None:
                throttle, errors, draw = self._storm
                weather = draw.random()
                if weather < throttle + errors:
                    self.stormed += 1
                    if weather < throttle:
                        raise SesError("TooManyRequestsException", "Too many requests.")
                    raise SesError("InternalFailure", "We encountered an internal error.")
            now = time.monotonic()
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if self.enforce_rate and len(self._window) >= self.max_send_rate:
                self.throttled += 1
                raise SesError("TooManyRequestsException", "Maximum sending rate exceeded.")
            self._window.append(now)
            mid = f"0100{self._prefix}-{next(self._ids):08d}-{uuid.uuid4()}-000000"
            if not self.keep_content:
                fields |= {"raw": None, "simple": None}
            sent = Sent(message_id=mid, at=now, **fields)
            self.messages.append(sent)
            self.sent_last_24h += 1
            if self._drops:
                self._drops -= 1
                return sent, None
            return sent, self._hangs.popleft() if self._hangs else 0.0

    def start(self) -> SesStandIn:
        """Listen on 127.0.0.1, a free port; `url` is the endpoint to give boto3."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._server.open_lock:  # end kept-alive connections and their threads
                for sock in self._server.open:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            self._server = None

    def __enter__(self) -> SesStandIn:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _parse(request: dict[str, Any]) -> dict[str, Any]:
    """The fields of a Sent from a SendEmail body, or SesError (BadRequestException)."""
    content = request.get("Content") or {}
    raw, simple, custom = None, None, []
    if "Raw" in content:
        try:
            raw = base64.b64decode(content["Raw"]["Data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise SesError("BadRequestException", "Raw Data must be base64.") from None
    elif "Simple" in content:
        parts = content["Simple"]
        body = parts.get("Body") or {}
        simple = {"Subject": (parts.get("Subject") or {}).get("Data", "")}
        simple |= {k: body[k]["Data"] for k in ("Text", "Html") if k in body}
        custom = [(h["Name"], h["Value"]) for h in parts.get("Headers", [])]
    else:
        raise SesError("BadRequestException", "The stand-in takes Simple or Raw content only.")
    where = request.get("Destination") or {}
    recipients = [
        a for k in ("ToAddresses", "CcAddresses", "BccAddresses") for a in where.get(k, [])
    ]
    if not recipients and raw is not None:  # SES reads them from the message's headers
        head = BytesHeaderParser().parsebytes(raw)
        recipients = [a for _, a in getaddresses(head.get_all("To", []) + head.get_all("Cc", []))]
    if not recipients:
        raise SesError("BadRequestException", "Missing recipients.")
    return {
        "recipients": tuple(recipients),
        "raw": raw,
        "simple": simple,
        "custom_headers": custom,
        "list_management": request.get("ListManagementOptions"),
        "configuration_set": request.get("ConfigurationSetName"),
        "from_address": request.get("FromEmailAddress"),
    }


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 refuses simultaneous connections
    daemon_threads = True
    block_on_close = False  # a hanging handler must not stall stop()
    standin: SesStandIn

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()


class _Handler(StreamRequestHandler):
    """A minimal HTTP/1.1 keep-alive loop: http.server's e-mail header parser costs more
    than everything else a request does here."""

    disable_nagle_algorithm = True
    server: _Server

    def handle(self) -> None:
        with self.server.open_lock:
            self.server.open.add(self.connection)
        try:
            while self._one():
                pass
        except (OSError, ValueError):  # the client went away, or spoke no HTTP
            pass
        finally:
            with self.server.open_lock:
                self.server.open.discard(self.connection)

    def _one(self) -> bool:
        """Read and answer one request; False ends the connection."""
        method, target, _ = self.rfile.readline(65536).decode("latin-1").split(" ", 2)
        length, keep = 0, True
        while (line := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection":
                keep = value.strip().lower() != "close"
        body = self.rfile.read(length)
        standin, path = self.server.standin, target.split("?", 1)[0]
        with standin._lock:
            standin.requests += 1
        try:
            if method == "GET" and path == ACCOUNT_PATH:
                return self._answer(200, standin.account()) and keep
            if method != "POST" or path != SEND_PATH:
                raise SesError("NotFoundException", f"No route for {method} {path}.")
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise SesError("BadRequestException", "The body is not JSON.") from None
            sent, delay = standin.send(request)
        except SesError as exc:
            return self._answer(exc.status, {"message": exc.message}, exc.code) and keep
        except Exception as exc:  # a stand-in bug: answer 500, and let socketserver print it
            self._answer(500, {"message": f"stand-in bug: {exc!r}"}, "InternalFailure")
            raise
        if delay is None:
            return False
        if delay:
            time.sleep(delay)
        return self._answer(200, {"MessageId": sent.message_id}) and keep

    def _answer(self, status: int, body: dict[str, Any], error: str = "") -> bool:
        data = json.dumps(body).encode()
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            f"x-amzn-RequestId: {uuid.uuid4()}",
        ] + ([f"x-amzn-ErrorType: {error}"] if error else [])
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        return True

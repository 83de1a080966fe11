"""The send loop: a ledger, a pool of senders, one pacer.

The ledger makes a real send at-most-once per recipient: a row is marked `sending` (and
committed) only once the pacer has granted its slot and just before the provider is called,
and `sent` after the provider answered; a row still `sending` after a crash is reported
`in_doubt`, never silently resent. A bounded pool of threads sends concurrently, all paced by
one rate limiter at the account's rate (slowing down when the provider throttles anyway, and
recovering), within the account's daily quota. Recipients are read from the ledger a page at a
time, so memory does not grow with the audience.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from pipeline.audience import Audience
from pipeline.errors import BuzzError, DeliveryError
from pipeline.log import log
from pipeline.models import DeliveryState, Recipient
from pipeline.store import Store
from pipeline.transport import (
    Ambiguous,
    QuotaReached,
    Rejected,
    Transient,
    Transport,
    redact,
    short_hash,
)

PROGRESS_EVERY_S = 10.0
PAGE = 500
ATTEMPTS = 5
HEADROOM = 0.97  # pace a little under the account's rate (and at least 1/s under it):
# the moment SES counts a message drifts from its slot by network and commit jitter

Progress = Callable[[str, int, int, float], None]  # lang, done, total, messages per second


class RateLimiter:
    """Evenly spaced slots shared by every sender thread, at most `rate` a second.

    When the provider throttles anyway, the pace drops by 30 %; every success wins back 1 % of
    the ceiling, so a transient squeeze costs a few seconds, not the rest of the send.
    """

    def __init__(self, rate: float | None) -> None:
        self.ceiling = min(rate * HEADROOM, max(rate - 1, rate / 2)) if rate else None
        self.rate = self.ceiling
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for the next slot; False when the send is being stopped."""
        if self.rate is None:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + 1.0 / self.rate
        return not stop.wait(max(0.0, slot - time.monotonic()))

    def throttled(self) -> None:
        """The provider said "too fast"."""
        with self._lock:
            if self.rate and self.ceiling:
                self.rate = max(self.ceiling * 0.1, self.rate * 0.7)

    def succeeded(self) -> None:
        """A message went through."""
        with self._lock:
            if self.rate and self.ceiling and self.rate < self.ceiling:
                self.rate = min(self.ceiling, self.rate + self.ceiling * 0.01)


@dataclass(slots=True)
class SendReport:
    """The ledger of one language of one edition after a send."""

    edition_id: str
    lang: str
    counts: dict[str, int] = field(default_factory=dict)
    attempted: int = 0


class _Stop(BuzzError):
    """The send is stopping (quota, account refused, transient errors outlasted retries)."""


@dataclass(slots=True)
class _Run:
    """What the sender threads share during one send."""

    store: Store
    edition_id: str
    audience: Audience
    transport: Transport
    make_message: Callable[[Recipient], bytes]
    limiter: RateLimiter
    budget: int | None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempted: int = 0
    error: BuzzError | None = None
    shown: float = 0.0  # when progress was last shown

    def take_budget(self) -> bool:
        """Count one more message against the 24-hour quota; False when it is used up (the
        send then starts nothing new, and lets the messages already counted go)."""
        if self.budget is None:
            return True
        with self.lock:
            if self.budget <= 0:
                self.error = self.error or QuotaReached(
                    "the account's 24-hour sending quota is used up; the next run resumes"
                )
                return False
            self.budget -= 1
            return True

    def take_slot(self) -> None:
        """Wait for the pacer's next slot."""
        if not self.limiter.acquire(self.stop):
            raise _Stop("stopping")

    def halt(self, error: BuzzError) -> None:
        with self.lock:
            self.error = self.error or error
        self.stop.set()


def send_language(
    store: Store,
    edition_id: str,
    lang: str,
    audience: Audience,
    transport: Transport,
    make_message: Callable[[Recipient], bytes],
    *,
    resend_in_doubt: bool = False,
    max_rate: float = 0,
    workers: int = 16,
    progress: Progress | None = None,
) -> SendReport:
    """Send one language of an edition to every recipient of its ledger not yet sent.

    The audience is frozen into the ledger the first time; a later call resumes it. Raises
    the error that stopped the send (QuotaReached, Transient, DeliveryError) after the messages
    in flight have settled; the recipients not reached stay pending for the next run.
    """
    report = SendReport(edition_id, lang)
    frozen = store.freeze_audience(edition_id, lang, audience.recipients(lang))
    interrupted = store.mark_interrupted(edition_id, lang)
    if interrupted:
        log.warning("send_in_doubt", edition=edition_id, lang=lang, in_doubt=interrupted)
    wanted = [DeliveryState.PENDING] + ([DeliveryState.IN_DOUBT] if resend_in_doubt else [])
    total = store.count_deliveries(edition_id, lang, wanted)
    quota = transport.quota()
    account_rate = quota.max_rate if quota.known or not max_rate else None
    rates = [rate for rate in (max_rate, account_rate) if rate]
    run = _Run(
        store, edition_id, audience, transport, make_message,
        RateLimiter(min(rates) if rates else None), quota.remaining_24h,
    )  # fmt: skip
    log.info("send_started", edition=edition_id, lang=lang, frozen=frozen, todo=total,
             rate=run.limiter.rate, quota_left=quota.remaining_24h)  # fmt: skip
    started = time.monotonic()
    _pump(run, store.iter_deliveries(edition_id, lang, wanted, PAGE), workers, lang, total,
          progress)  # fmt: skip
    report.attempted = run.attempted
    report.counts = store.delivery_counts(edition_id).get(lang, {})
    elapsed = time.monotonic() - started
    log.info("send_finished", edition=edition_id, lang=lang, **report.counts,
             duration_ms=round(elapsed * 1000, 1),
             rate=round(run.attempted / elapsed, 1) if elapsed else None)  # fmt: skip
    if run.error is not None:
        raise run.error
    return report


def _pump(
    run: _Run,
    recipients: Iterator[Recipient],
    workers: int,
    lang: str,
    total: int,
    progress: Progress | None,
) -> None:
    """Feed the sender pool, never more than twice its size in flight; report progress."""
    in_flight = threading.BoundedSemaphore(workers * 2)
    submitted = done = 0
    started = last_report = time.monotonic()

    def finished(future: Future[None]) -> None:
        nonlocal done
        error = future.exception()
        if error is not None:  # a failure outside the provider call: stop, and say why
            log.error("send_failed", error=repr(error))
            run.halt(DeliveryError(f"unexpected error while sending: {error!r}"))
        with run.lock:
            done += 1
        in_flight.release()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="buzz-send")
    try:
        for recipient in recipients:
            while not in_flight.acquire(timeout=0.5):
                last_report = _report(run, lang, done, total, started, last_report, progress)
            if run.stop.is_set() or run.error is not None:
                in_flight.release()
                break
            submitted += 1
            pool.submit(_deliver, run, recipient).add_done_callback(finished)
            last_report = _report(run, lang, done, total, started, last_report, progress)
        while done < submitted:
            time.sleep(0.1)
            last_report = _report(run, lang, done, total, started, last_report, progress)
    finally:  # Ctrl-C or a failure here: nothing new starts, what is in flight settles
        run.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if progress:
        progress(lang, done, total, done / max(time.monotonic() - started, 1e-9))


def _report(
    run: _Run,
    lang: str,
    done: int,
    total: int,
    started: float,
    last: float,
    progress: Progress | None,
) -> float:
    """Show progress on the terminal twice a second; log it every PROGRESS_EVERY_S (the
    returned time is the last log's)."""
    now = time.monotonic()
    rate = done / max(now - started, 1e-9)
    if progress and now - run.shown >= 0.5:
        run.shown = now
        progress(lang, done, total, rate)
    if now - last < PROGRESS_EVERY_S:
        return last
    log.info("send_progress", edition=run.edition_id, lang=lang, done=done, total=total,
             rate=round(rate, 1), pace=run.limiter.rate)  # fmt: skip
    return now


def _deliver(run: _Run, recipient: Recipient) -> None:
    """One recipient, from slot to ledger. Never raises: a fatal error halts the run."""
    store, edition = run.store, run.edition_id
    if run.stop.is_set():
        return
    if not run.audience.is_subscribed(recipient):
        store.mark(edition, recipient, DeliveryState.SKIPPED, error="unsubscribed")
        return
    try:
        message = run.make_message(recipient)
    except Exception as exc:  # one unbuildable message must not hold up the others
        _failed(store, edition, recipient, f"cannot build the message: {exc!r}")
        return
    marked = False
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(Transient),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential_jitter(multiplier=0.5, max=8),
            reraise=True,
        ):
            with attempt:
                if not marked and not run.take_budget():
                    return
                run.take_slot()
                if not marked:
                    store.mark(edition, recipient, DeliveryState.SENDING)
                    marked = True
                    with run.lock:
                        run.attempted += 1
                try:
                    message_id = run.transport.send(recipient, message)
                except Transient as exc:
                    if "rate" in str(exc).lower() or "TooManyRequests" in str(exc):
                        run.limiter.throttled()
                    raise
    except Rejected as exc:
        _failed(store, edition, recipient, str(exc))
    except Ambiguous as exc:
        error = redact(str(exc))
        store.mark(edition, recipient, DeliveryState.IN_DOUBT, error=error)
        log.warning("recipient_in_doubt", lang=recipient.lang, to=short_hash(recipient.email),
                    error=error)  # fmt: skip
    except _Stop:
        if marked:  # it had its slot and was never sent: back in the queue
            store.mark(edition, recipient, DeliveryState.PENDING)
    except (Transient, QuotaReached, DeliveryError) as exc:
        # the provider did not take it: back in the queue for the next run
        store.mark(edition, recipient, DeliveryState.PENDING, error=redact(str(exc)))
        run.halt(exc)
    except Exception as exc:  # a bug must stop the send, not leave a row `sending`
        store.mark(edition, recipient, DeliveryState.IN_DOUBT if marked else
                   DeliveryState.PENDING, error=redact(repr(exc)))  # fmt: skip
        run.halt(DeliveryError(f"unexpected error while sending: {exc!r}"))
    else:
        try:
            store.mark(edition, recipient, DeliveryState.SENT, message_id=message_id)
        except Exception:
            log.error("ledger_write_failed", to=short_hash(recipient.email), message_id=message_id)
            raise
        run.limiter.succeeded()


def _failed(store: Store, edition_id: str, recipient: Recipient, error: str) -> None:
    store.mark(edition_id, recipient, DeliveryState.FAILED, error=redact(error))
    log.warning(
        "recipient_failed", lang=recipient.lang, to=short_hash(recipient.email), error=redact(error)
    )

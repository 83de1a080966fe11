"""The send loop: a ledger, a pool of senders, one pacer, one circuit breaker.

The ledger makes a real send at-most-once per recipient: a row is marked `sending` (and
committed) only once the pacer has granted its slot and just before the provider is called,
and `sent` after the provider answered; a row still `sending` after a crash is reported
`in_doubt`, never silently resent. A bounded pool of threads sends concurrently, all paced by
one rate limiter at the account's rate, within the account's daily quota. Recipients are read
from the ledger a page at a time, so memory does not grow with the audience.

Bad weather (throttling, 5xx, connections that fail) costs time, not recipients. A call the
provider did not take puts its row back to `pending` and, unless the refusal was about our pace,
gives its pacer slot back (SES counts only the messages it accepts); the recipient is tried
again after a short, growing wait, up to ATTEMPTS calls in one pass over the ledger. Then it
goes back to the queue, and the send goes on; the next pass (after a longer wait) takes whatever
is still pending. Only the circuit breaker stops a send: calls failing and none answered for
`breaker_quiet_s`, or at least `breaker_failure_ratio` of the last `breaker_window` calls
failed. It raises BreakerTripped (exit 75), everything not sent still pending.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from pipeline.audience import Audience
from pipeline.config import DeliverySection
from pipeline.errors import BreakerTripped, BuzzError, DeliveryError
from pipeline.log import log
from pipeline.models import DeliveryState, Recipient
from pipeline.store import Store
from pipeline.transport import (
    Ambiguous,
    Quota,
    QuotaReached,
    Rejected,
    Transient,
    Transport,
    redact,
    short_hash,
)

PROGRESS_EVERY_S = 10.0
PAGE = 500
ATTEMPTS = 5  # calls per recipient in one pass; then it goes back to the queue
RETRY_WAIT_S = (0.1, 2.0)  # before a recipient's next call: doubles from 0.1 s to 2 s, jittered
PASS_WAIT_S = (1.0, 30.0)  # before the next pass over what went back: doubles from 1 s to 30 s
HEADROOM = 0.97  # pace a little under the account's rate (and at least 1/s under it):
# the moment SES counts a message drifts from its slot by network and commit jitter
PER_WORKER = 4  # recipients under way at once (queued, in a call, or waiting) per sender thread
# How the pacer reads a throttled call, by the share of the breaker's recent calls that failed:
# above SLOW_DOWN_SHARE, SES means "too fast": slow down; from GIVE_BACK_SHARE up, refusals come
# at random (a storm): give the slot back and ride it out at full pace; below, a lone 429 says
# the pace touches the account's limit: keep the pace, give nothing back.
SLOW_DOWN_SHARE = 0.5
GIVE_BACK_SHARE = 0.1

QUOTA_USED_UP = "the account's 24-hour sending quota is used up; the next run resumes"

Progress = Callable[[str, int, int, float], None]  # lang, done, total, messages per second


def rate_limit(cap: float, quota: Quota) -> float | None:
    """The most messages a send may have SES count in any second (None: no limit): the lower
    of the configured cap (`delivery.max_send_rate`, 0 for none) and the account's rate — when
    the provider would not say, the cap alone if there is one."""
    account = quota.max_rate if quota.known or not cap else None
    rates = [rate for rate in (cap, account) if rate]
    return min(rates) if rates else None


def effective_rate(cap: float, quota: Quota) -> float | None:
    """The pace of a send, in messages per second (None: no limit): `rate_limit`, a little
    under it. The pacer and the dry run's prediction both use this."""
    rate = rate_limit(cap, quota)
    if rate is None:
        return None
    return min(rate * HEADROOM, max(rate - 1, rate / 2))


def predicted_seconds(count: int, rate: float | None, quota_left: int | None) -> float | None:
    """How long sending `count` messages takes at `rate` (None: no pace limit), within the
    quota left (a send stops there)."""
    if quota_left is not None:
        count = min(count, quota_left)
    return count / rate if rate else None


class RateLimiter:
    """Evenly spaced slots shared by every sender thread, at most `rate` a second.

    Besides, a call starts only while fewer than `limit` calls (the rule SES enforces, default
    `rate`; scaled down with the pace when SES says "too fast") are in flight or were answered
    in the last second (SES's own rule, counted conservatively: SES took each message at the
    latest when it answered): a thread that wakes late, a slow first call, or a stall cannot
    bunch what SES sees. The guard holds SES's limit, not the pace: counted from the start of
    each call to its answer, a second of evenly spaced calls spans a second plus a call's
    duration, so a guard at the pace itself would set a slower pace than the slots.
    A call the provider did not take for a reason other than our pace (SES counts only what it
    accepts) gives its slot back: the next slot comes after half the interval, never at once, so
    that a storm of random refusals costs little time without bursts (at most a second's worth
    of slots is given back). When SES really means "too fast", the pace drops by 30 %; every
    success wins back 1 % of the ceiling, so a squeeze costs a few seconds, not the rest of the
    send.
    """

    def __init__(self, rate: float | None, limit: float | None = None) -> None:
        self.ceiling = rate
        self.rate = rate
        self.limit = limit or rate  # what SES allows in any second, at the ceiling's pace
        self._next = time.monotonic()
        self._given_back = 0  # slots given back, not yet used
        self._in_flight = 0
        self._answered: deque[float] = deque()  # when the calls SES may count were answered
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for the next slot; False when the send is being stopped. Each call granted is
        then settled once: `succeeded`, `give_back` or `settle`."""
        if self.rate is None:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            step = 1.0 / self.rate
            if self._given_back:
                self._given_back -= 1
                step /= 2
            self._next = slot + step
        wait = slot - now
        while not stop.wait(max(0.0, wait)):
            with self._lock:
                now = time.monotonic()
                while self._answered and self._answered[0] <= now - 1.0:
                    self._answered.popleft()
                if self._in_flight + len(self._answered) < self._most():
                    self._in_flight += 1
                    return True
                wait = self._answered[0] + 1.0 - now if self._answered else 0.01
        return False

    def _most(self) -> int:
        """How many calls SES may count in any second at the current pace (under the lock)."""
        scale = self.rate / self.ceiling if self.rate and self.ceiling else 1.0
        return max(1, int((self.limit or 0) * min(1.0, scale)))

    def settle(self, *, counted: bool = True) -> None:
        """A granted call is over; `counted`: SES may have counted it against the rate."""
        if self.rate is None:
            return
        with self._lock:
            self._in_flight -= 1
            if counted:
                self._answered.append(time.monotonic())

    def give_back(self) -> None:
        """A granted call was not counted by the provider: its slot comes back."""
        self.settle(counted=False)
        with self._lock:
            if self.rate:
                self._given_back = min(self._given_back + 1, max(1, int(self.rate)))

    def slow_down(self) -> None:
        """The provider said "too fast", and means it."""
        with self._lock:
            if self.rate and self.ceiling:
                self.rate = max(self.ceiling * 0.1, self.rate * 0.7)

    def succeeded(self) -> None:
        """A granted call's message went through."""
        self.settle()
        with self._lock:
            if self.rate and self.ceiling and self.rate < self.ceiling:
                self.rate = min(self.ceiling, self.rate + self.ceiling * 0.01)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a send stops because the provider keeps failing (`[delivery]` breaker_* keys)."""

    quiet_s: float
    failure_ratio: float
    window: int

    @classmethod
    def of(cls, delivery: DeliverySection) -> BreakerPolicy:
        """The policy the configuration sets."""
        return cls(delivery.breaker_quiet_s, delivery.breaker_failure_ratio,
                   delivery.breaker_window)  # fmt: skip


class Breaker:
    """Watches the provider's answers: trips when calls have been failing and none was answered
    for `quiet_s` (a slow pace alone never trips it), or when at least `failure_ratio` of the
    last `window` calls failed. Not thread-safe: the send loop calls it under its lock."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.recent: deque[bool] = deque(maxlen=policy.window)  # True: that call failed
        self.failures = 0  # among `recent`
        self.answered_at = time.monotonic()
        self.reason: str | None = None  # "quiet" or "failure_ratio" once tripped

    def record(self, failed: bool) -> None:
        """One call's outcome: failed (throttled, 5xx, unreachable, answer lost) or answered."""
        if len(self.recent) == self.recent.maxlen:
            self.failures -= self.recent[0]
        self.recent.append(failed)
        self.failures += failed
        if not failed:
            self.answered_at = time.monotonic()

    @property
    def failure_share(self) -> float:
        """The share of the last `window` calls that failed (a send's first calls count the
        ones not made yet as answered: a lone early failure is not a trend)."""
        return self.failures / self.policy.window

    def check(self) -> str | None:
        """Why the send must stop now, if it must; once tripped, it stays tripped."""
        if self.reason is None:
            failing = bool(self.recent) and self.recent[-1]
            if failing and time.monotonic() - self.answered_at >= self.policy.quiet_s:
                self.reason = "quiet"
            elif (
                len(self.recent) == self.policy.window
                and self.failures >= self.policy.failure_ratio * self.policy.window
            ):
                self.reason = "failure_ratio"
        return self.reason

    def explain(self) -> str:
        """The tripped breaker's one line for the operator."""
        if self.reason == "quiet":
            why = f"no call answered for {self.policy.quiet_s:g} s"
        else:
            why = f"{self.failures} of the last {len(self.recent)} calls failed"
        return f"the provider keeps failing ({why}); the rest stays pending for the next run"


@dataclass(slots=True)
class SendStats:
    """How a send went, call by call: the figures of its `send_finished` event."""

    attempts: int = 0  # provider calls
    transient: int = 0  # calls throttled, answered 5xx, or that never reached the provider
    throttled: int = 0  # of those, the throttled ones
    passes: int = 0  # sweeps over the ledger
    requeued: int = 0  # times a recipient went back to the queue after ATTEMPTS calls
    breaker: str | None = None  # why the breaker stopped the send, if it did

    def fields(self) -> dict[str, object]:
        """The event's fields."""
        return {
            "attempts": self.attempts,
            "transient_failures": self.transient,
            "throttled": self.throttled,
            "failure_ratio": round(self.transient / self.attempts, 4) if self.attempts else 0.0,
            "passes": self.passes,
            "requeued": self.requeued,
            "breaker_tripped": self.breaker is not None,
            "breaker_reason": self.breaker,
        }


@dataclass(slots=True)
class SendReport:
    """The ledger of one language of one edition after a send."""

    edition_id: str
    lang: str
    counts: dict[str, int] = field(default_factory=dict)
    attempted: int = 0  # recipients handed to the provider at least once
    stats: SendStats = field(default_factory=SendStats)


class _Next(Enum):
    """What becomes of a recipient after one try."""

    SETTLED = "settled"  # sent, failed, skipped or in doubt: this send is done with it
    RETRY = "retry"  # not taken: call again in this pass, after a wait
    REQUEUE = "requeue"  # not taken ATTEMPTS times: back to the queue, for the next pass
    LEFT = "left"  # the send is stopping: still pending, untouched since


@dataclass(slots=True)
class _Job:
    """One recipient within one pass."""

    recipient: Recipient
    first_pass: bool
    message: bytes | None = None
    calls: int = 0  # calls in this pass


@dataclass(slots=True)
class _Run:
    """What the pump and the sender threads share during one send (under `lock`)."""

    store: Store
    edition_id: str
    audience: Audience
    transport: Transport
    make_message: Callable[[Recipient], bytes]
    limiter: RateLimiter
    breaker: Breaker
    budget: int | None
    stats: SendStats = field(default_factory=SendStats)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Condition = field(default_factory=threading.Condition)
    retries: list[tuple[float, int, _Job]] = field(default_factory=list)  # a heap, by time
    order: Iterator[int] = field(default_factory=itertools.count)
    active: int = 0  # recipients of this pass not settled: queued, in a call, or waiting
    requeued: int = 0  # in this pass
    done: int = 0  # recipients settled
    attempted: int = 0
    error: BuzzError | None = None
    shown: float = 0.0  # when progress was last shown

    def take_budget(self) -> bool:
        """Count one more message against the 24-hour quota; False when it is used up (the
        send then starts nothing new, and lets the messages already counted go)."""
        with self.lock:
            if self.budget is None:
                return True
            if self.budget <= 0:
                self.error = self.error or QuotaReached(QUOTA_USED_UP)
                return False
            self.budget -= 1
            return True

    def give_back_budget(self) -> None:
        """The message counted was not taken by the provider."""
        with self.lock:
            if self.budget is not None:
                self.budget += 1

    def called(self, job: _Job) -> None:
        """A provider call is about to be made for `job`."""
        with self.lock:
            self.stats.attempts += 1
            if job.first_pass and job.calls == 0:
                self.attempted += 1

    def answered(self) -> None:
        """The provider decided (sent or refused for good)."""
        with self.lock:
            self.breaker.record(failed=False)

    def failed(self, *, transient: bool, throttled: bool = False) -> None:
        """A granted call failed (transient: not taken, safe to retry; else its answer was
        lost)."""
        with self.lock:
            self.breaker.record(failed=True)
            self.stats.transient += transient
            self.stats.throttled += throttled
            share = self.breaker.failure_share
            storm = GIVE_BACK_SHARE <= share <= SLOW_DOWN_SHARE
            if transient and (storm or not throttled):  # not about our pace: SES did not count it
                self.limiter.give_back()
            else:
                self.limiter.settle()
            if throttled and share > SLOW_DOWN_SHARE:
                self.limiter.slow_down()
            if transient:  # not taken: not counted against the quota either
                self.give_back_budget()
            self.watch()

    def watch(self) -> None:
        """Trip the breaker if it must (under the lock)."""
        if self.error is None and self.breaker.check() is not None:
            self.stats.breaker = self.breaker.reason
            self.halt(BreakerTripped(self.breaker.explain()))

    def halt(self, error: BuzzError) -> None:
        """Stop the send for `error` (the first error given wins)."""
        with self.lock:
            self.error = self.error or error
            self.stop.set()
            self.lock.notify_all()


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
    breaker: BreakerPolicy | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Send one language of an edition to every recipient of its ledger not yet sent.

    The audience is frozen into the ledger the first time; a later call resumes it. Raises
    the error that stopped the send (QuotaReached, BreakerTripped, DeliveryError) after the
    messages in flight have settled; the recipients not reached stay pending for the next run.
    `breaker`: the circuit breaker's policy (default: the `[delivery]` defaults).
    """
    report = SendReport(edition_id, lang)
    frozen = store.freeze_audience(edition_id, lang, audience.recipients(lang))
    interrupted = store.mark_interrupted(edition_id, lang)
    if interrupted:
        log.warning("send_in_doubt", edition=edition_id, lang=lang, in_doubt=interrupted)
    first = [DeliveryState.PENDING] + ([DeliveryState.IN_DOUBT] if resend_in_doubt else [])
    total = store.count_deliveries(edition_id, lang, first)
    quota = transport.quota()
    run = _Run(
        store, edition_id, audience, transport, make_message,
        RateLimiter(effective_rate(max_rate, quota), rate_limit(max_rate, quota)),
        Breaker(breaker or BreakerPolicy.of(DeliverySection())), quota.remaining_24h,
    )  # fmt: skip
    log.info("send_started", edition=edition_id, lang=lang, frozen=frozen, todo=total,
             rate=run.limiter.rate, quota_left=quota.remaining_24h)  # fmt: skip
    started = time.monotonic()

    def recipients(number: int) -> Iterator[Recipient]:
        states = first if number == 1 else [DeliveryState.PENDING]
        return store.iter_deliveries(edition_id, lang, states, PAGE)

    _pump(run, recipients, workers, lang, total, progress)
    if isinstance(run.error, BreakerTripped) and transport.quota().remaining_24h == 0:
        # throttled to a standstill because the day's quota is used up (some fronts of SES
        # answer both with one throttling code): say so, from the account's own figures
        run.error = QuotaReached(QUOTA_USED_UP)
    report.attempted = run.attempted
    report.stats = run.stats
    report.counts = store.delivery_counts(edition_id).get(lang, {})
    elapsed = time.monotonic() - started
    log.info("send_finished", edition=edition_id, lang=lang, **report.counts,
             duration_ms=round(elapsed * 1000, 1),
             rate=round(report.counts.get(DeliveryState.SENT, 0) / elapsed, 1) if elapsed else None,
             **run.stats.fields())  # fmt: skip
    if run.error is not None:
        raise run.error
    return report


@dataclass(slots=True)
class _Clock:
    """When the send started, and when its progress was last logged."""

    started: float
    logged: float


def _pump(
    run: _Run,
    recipients: Callable[[int], Iterator[Recipient]],
    workers: int,
    lang: str,
    total: int,
    progress: Progress | None,
) -> None:
    """Pass after pass over the ledger until nothing goes back to the queue, or the send stops;
    wait longer before each new pass."""
    started = time.monotonic()
    clock = _Clock(started, started)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="buzz-send")
    try:
        while True:
            run.stats.passes += 1
            requeued = _one_pass(run, pool, recipients(run.stats.passes),
                                 workers * PER_WORKER, lang, total, clock, progress)  # fmt: skip
            if not requeued or run.stop.is_set() or run.error is not None:
                break
            low, high = PASS_WAIT_S
            wait = min(high, low * 2 ** (run.stats.passes - 1))
            log.info("send_pass_finished", edition=run.edition_id, lang=lang,
                     passes=run.stats.passes, requeued=requeued, next_pass_in_s=wait)  # fmt: skip
            until = time.monotonic() + wait
            while time.monotonic() < until and not run.stop.is_set():
                with run.lock:
                    run.watch()
                _report(run, lang, total, clock, progress)
                run.stop.wait(min(0.2, max(0.0, until - time.monotonic())))
    finally:  # Ctrl-C or a failure here: nothing new starts, what is in flight settles
        run.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if progress:
        progress(lang, run.done, total, run.done / max(time.monotonic() - started, 1e-9))


def _one_pass(
    run: _Run,
    pool: ThreadPoolExecutor,
    recipients: Iterator[Recipient],
    most: int,
    lang: str,
    total: int,
    clock: _Clock,
    progress: Progress | None,
) -> int:
    """Hand every recipient of `recipients`, and every retry that comes due, to the pool,
    never more than `most` at a time; returns how many went back to the queue."""
    exhausted = False
    with run.lock:
        run.requeued = 0
    while True:
        job: _Job | None = None
        with run.lock:
            run.watch()
            feeding = not run.stop.is_set() and run.error is None
            if not feeding and run.active == len(run.retries):  # nothing in a call any more
                run.retries.clear()  # their rows are pending: the next run takes them
                run.active = 0
                break
            if feeding and run.retries and run.retries[0][0] <= time.monotonic():
                job = heapq.heappop(run.retries)[2]
            elif feeding and not exhausted and run.active < most:
                run.active += 1  # reserved for the next recipient of the ledger
            elif exhausted and run.active == 0:
                break
            else:
                due = run.retries[0][0] - time.monotonic() if run.retries else 0.2
                run.lock.wait(min(0.2, max(0.001, due)))
                continue
        if job is None:
            recipient = next(recipients, None)
            if recipient is None:
                exhausted = True
                with run.lock:
                    run.active -= 1
                continue
            job = _Job(recipient, first_pass=run.stats.passes == 1)
        pool.submit(_try, run, job)
        _report(run, lang, total, clock, progress)
    return run.requeued


def _report(run: _Run, lang: str, total: int, clock: _Clock, progress: Progress | None) -> None:
    """Show progress on the terminal twice a second; log it every PROGRESS_EVERY_S."""
    now = time.monotonic()
    rate = run.done / max(now - clock.started, 1e-9)
    if progress and now - run.shown >= 0.5:
        run.shown = now
        progress(lang, run.done, total, rate)
    if now - clock.logged >= PROGRESS_EVERY_S:
        clock.logged = now
        log.info("send_progress", edition=run.edition_id, lang=lang, done=run.done,
                 total=total, rate=round(rate, 1), pace=run.limiter.rate)  # fmt: skip


def _try(run: _Run, job: _Job) -> None:
    """One try of one recipient, then its fate; never raises (a bug halts the send)."""
    after = _Next.LEFT
    try:
        after = _attempt(run, job)
    except Exception as exc:  # a failure outside the provider call: stop, and say why
        log.error("send_failed", error=repr(exc))
        run.halt(DeliveryError(f"unexpected error while sending: {exc!r}"))
    finally:
        with run.lock:
            if after is _Next.RETRY and not run.stop.is_set():
                low, high = RETRY_WAIT_S
                wait = min(high, low * 2 ** (job.calls - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
                heapq.heappush(run.retries, (time.monotonic() + wait, next(run.order), job))
            else:
                run.active -= 1
                run.done += after is _Next.SETTLED
                if after is _Next.REQUEUE:
                    run.requeued += 1
                    run.stats.requeued += 1
            run.lock.notify_all()


def _attempt(run: _Run, job: _Job) -> _Next:
    """Slot, `sending`, the provider call, the ledger: what becomes of the recipient."""
    store, edition, recipient = run.store, run.edition_id, job.recipient
    if run.stop.is_set():
        return _Next.LEFT
    if job.message is None:
        if not run.audience.is_subscribed(recipient):
            store.mark(edition, recipient, DeliveryState.SKIPPED, error="unsubscribed")
            return _Next.SETTLED
        try:
            job.message = run.make_message(recipient)
        except Exception as exc:  # one unbuildable message must not hold up the others
            _failed(store, edition, recipient, f"cannot build the message: {exc!r}")
            return _Next.SETTLED
    if not run.take_budget():
        return _Next.LEFT
    if not run.limiter.acquire(run.stop):
        run.give_back_budget()
        return _Next.LEFT
    store.mark(edition, recipient, DeliveryState.SENDING)  # counts the attempt in the ledger
    run.called(job)
    job.calls += 1
    try:
        message_id = run.transport.send(recipient, job.message)
    except Transient as exc:  # not taken: back to pending at once, so a crash leaves no doubt
        store.mark(edition, recipient, DeliveryState.PENDING, error=redact(str(exc)))
        run.failed(transient=True, throttled=exc.throttled)
        return _Next.RETRY if job.calls < ATTEMPTS else _Next.REQUEUE
    except Rejected as exc:
        run.limiter.settle()
        _failed(store, edition, recipient, str(exc))
        run.answered()
        return _Next.SETTLED
    except Ambiguous as exc:
        error = redact(str(exc))
        store.mark(edition, recipient, DeliveryState.IN_DOUBT, error=error)
        log.warning("recipient_in_doubt", lang=recipient.lang, to=short_hash(recipient.email),
                    error=error)  # fmt: skip
        run.failed(transient=False)
        return _Next.SETTLED
    except (QuotaReached, DeliveryError) as exc:  # the provider did not take it: pending
        run.limiter.settle()
        store.mark(edition, recipient, DeliveryState.PENDING, error=redact(str(exc)))
        run.halt(exc)
        return _Next.LEFT
    except Exception as exc:  # a bug must stop the send, not leave a row `sending`
        run.limiter.settle()
        store.mark(edition, recipient, DeliveryState.IN_DOUBT, error=redact(repr(exc)))
        run.halt(DeliveryError(f"unexpected error while sending: {exc!r}"))
        return _Next.SETTLED
    run.limiter.succeeded()
    try:
        store.mark(edition, recipient, DeliveryState.SENT, message_id=message_id)
    except Exception:
        log.error("ledger_write_failed", to=short_hash(recipient.email), message_id=message_id)
        raise
    run.answered()
    return _Next.SETTLED


def _failed(store: Store, edition_id: str, recipient: Recipient, error: str) -> None:
    store.mark(edition_id, recipient, DeliveryState.FAILED, error=redact(error))
    log.warning(
        "recipient_failed", lang=recipient.lang, to=short_hash(recipient.email), error=redact(error)
    )

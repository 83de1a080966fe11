"""Benchmark of delivery through SES (issue 6), against the local SES stand-in (tests/) with
30 ms of latency per call, spoken to by the real boto3 client through buzz's real send loop.

`python bench/bench_send.py [--sequential N] [--only storm]`:
1. MaxSendRate 200/s, 10,000 recipients: the rate sustained, duplicates, throttling surfaced;
2. the highest rate one process sustains (the stand-in in another process, no rate limit);
3. peak memory of the sending process with 1,000 and with 100,000 recipients;
4. a plain sequential boto3 loop over the same recipients (the first N, default 1,000: at
   30 ms a call, all 10,000 would take five minutes), for comparison;
5. storm vs calm (issue 10): 2,000 recipients at MaxSendRate 100/s, once in calm weather and
   once with 30 % of calls answered 429 and 2 % answered 500 at random (seeded), side by side:
   duration, the ratio, missing / duplicates / in doubt, calls, passes and requeues.
Every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import structlog
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peak import peak_rss  # noqa: E402
from pipeline.audience import LocalAudience, Signer  # noqa: E402
from pipeline.deliver import send_language  # noqa: E402
from pipeline.message import ListOptions, MessageTemplate  # noqa: E402
from pipeline.models import Edition, Story  # noqa: E402
from pipeline.render import Sender, render  # noqa: E402
from pipeline.store import Store, Subscriber  # noqa: E402
from pipeline.transport import SesTransport  # noqa: E402
from tests.helpers import make_post  # noqa: E402

NOW = datetime(2026, 11, 26, tzinfo=UTC)
LATENCY = 0.03
FROM = "IT Buzz <buzz@news.example.com>"


def _state(folder: Path, recipients: int) -> Path:
    state = folder / "state.sqlite"
    store = Store(state)
    store.upsert_subscribers(
        (
            Subscriber(f"r{n:06d}@example.com", "en", "bench", "2026-01-01")
            for n in range(recipients)
        ),
        NOW,
    )
    store.save_draft(Edition("bench", NOW, ("en",), ()))
    store.close()
    return state


def _template() -> MessageTemplate:
    stories = tuple(
        Story(
            {
                "en": make_post(
                    f"p{n}",
                    "en",
                    f"Story number {n} about the cloud",
                    summary="A summary of the story. " * 10,
                )
            }
        )
        for n in range(10)
    )
    sender = Sender("Example Inc.", "123 Example St", "https://example.com/contact")
    rendered = render(Edition("bench", NOW, ("en",), stories), "en", "IT Buzz", sender)
    return MessageTemplate(rendered, FROM, ListOptions("IT Buzz <it-buzz-en.news.example.com>"))


def send(state: Path, workers: int) -> dict[str, float]:
    """buzz's send loop over every subscriber of `state`; seconds, messages and peak RSS."""
    store = Store(state)
    audience = LocalAudience(store, "https://example.com/u?token={token}", lambda: Signer("bench"))
    template = _template()
    started = time.perf_counter()
    report = send_language(
        store, "bench", "en", audience, SesTransport("ca-central-1", connections=workers),
        lambda r: template.for_recipient(r, audience.unsubscribe_url(r), NOW), workers=workers,
    )  # fmt: skip
    return {
        "seconds": time.perf_counter() - started,
        "sent": report.counts["sent"],
        "failed": report.counts["failed"],
        "in_doubt": report.counts["in_doubt"],
        "pending": report.counts["pending"],
        "attempts": report.stats.attempts,
        "passes": report.stats.passes,
        "requeued": report.stats.requeued,
        "peak_bytes": peak_rss(),
    }


def _child(state: Path, workers: int, endpoint: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--send", str(state), str(workers)],
        env=os.environ | {"AWS_ENDPOINT_URL_SESV2": endpoint},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


class StandInProcess:
    """The SES stand-in in a process of its own (so that its work does not share the sending
    process's interpreter lock); `stats()` asks it what it received."""

    def __init__(self, rate: float, enforce: bool, storm: tuple[float, float] = (0, 0)) -> None:
        code = (
            f"import json, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.ses_standin import SesStandIn\n"
            f"with SesStandIn(max_send_rate={rate!r}, latency_s={LATENCY!r}, "
            f"enforce_rate={enforce!r}, keep_content=False, max_24h=-1) as s:\n"
            f"    s.storm(*{storm!r}, seed=2026)\n"
            "    print(s.url, flush=True)\n"
            "    for line in sys.stdin:\n"
            "        print(json.dumps({'messages': len(s.messages), 'throttled': s.throttled,"
            " 'stormed': s.stormed, 'unique': len({m.recipients for m in s.messages}),"
            " 'max_rate_seen': s.max_rate_seen()}), flush=True)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def stats(self) -> dict[str, int]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _sequential(recipients: int, url: str) -> float:
    client = boto3.client("sesv2", region_name="ca-central-1", endpoint_url=url,
                          config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
    template = _template()
    from pipeline.models import Recipient

    started = time.perf_counter()
    for n in range(recipients):
        recipient = Recipient(f"r{n:06d}@example.com", "en")
        data = template.for_recipient(recipient, "https://example.com/u?token=x", NOW)
        client.send_email(Destination={"ToAddresses": [recipient.email]},
                          Content={"Raw": {"Data": data}})  # fmt: skip
    return recipients / (time.perf_counter() - started)


STORM_RECIPIENTS = 2_000
STORM_RATE = 100.0


def storm_vs_calm() -> list[tuple[str, str, str]]:
    """The same 2,000-recipient send in calm weather and in a storm, one after the other."""
    runs = {}
    for weather, storm in (("calm", (0.0, 0.0)), ("storm", (0.3, 0.02))):
        standin = StandInProcess(rate=STORM_RATE, enforce=True, storm=storm)
        try:
            with tempfile.TemporaryDirectory() as folder:
                result = _child(_state(Path(folder), STORM_RECIPIENTS), 16, standin.url)
            runs[weather] = result | standin.stats()
        finally:
            standin.stop()
    rows = []
    for weather, run in runs.items():
        missing = STORM_RECIPIENTS - run["unique"]
        rows.append((
            f"{weather}: {STORM_RECIPIENTS:,} recipients, MaxSendRate {STORM_RATE:.0f}/s"
            + (", 30 % 429 + 2 % 500 at random" if weather == "storm" else ""),
            "0 / 0 / 0" if weather == "calm" else "0 / 0 / 0, ≤ 1.6× calm",
            f"{run['seconds']:.1f} s; missing / duplicates / in doubt: {missing} / "
            f"{run['messages'] - run['unique']} / {run['in_doubt']:.0f}; "
            f"{run['attempts']:.0f} calls ({run['stormed']} stormed, {run['throttled']} "
            f"over the rate), {run['passes']:.0f} pass(es), {run['requeued']:.0f} requeued",
        ))  # fmt: skip
    ratio = runs["storm"]["seconds"] / runs["calm"]["seconds"]
    rows.append(("storm / calm duration", "≤ 1.6×", f"{ratio:.2f}×"))
    return rows


def main(sequential: int, only: str | None) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    os.environ |= {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    if only == "storm":
        _print(storm_vs_calm())
        return
    rows = []
    paced = StandInProcess(rate=200, enforce=True)
    try:
        with tempfile.TemporaryDirectory() as folder:
            result = _child(_state(Path(folder), 10_000), 16, paced.url)
        stats = paced.stats()
        rate = result["sent"] / result["seconds"]
        sustained = f"{rate:.1f}/s ({rate / 200:.1%}) in {result['seconds']:.0f} s"
        rows.append(("MaxSendRate 200/s, 10,000 recipients: rate sustained", "≥ 95 %", sustained))
        outcome = (
            f"{stats['messages'] - stats['unique']} / {result['failed']:.0f} / "
            f"{result['in_doubt']:.0f} (SES saw at most {stats['max_rate_seen']} in a second, "
            f"answered 429 {stats['throttled']}×, each retried)"
        )
        rows.append(("… duplicates / recipients failed / in doubt", "0 / 0 / 0", outcome))
        seq_rate = _sequential(sequential, paced.url)
        rows.append((f"plain sequential boto3 loop, first {sequential:,} of the same",
                     "—", f"{seq_rate:.1f}/s (buzz: {rate / seq_rate:.1f}×)"))  # fmt: skip
    finally:
        paced.stop()
    unpaced = StandInProcess(rate=100_000, enforce=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            fast = _child(_state(Path(folder), 5_000), 32, unpaced.url)
            rows.append(("highest rate, one process, 2 cores (5,000 recipients, 32 senders)",
                         "aim ≥ 500/s", f"{fast['sent'] / fast['seconds']:.0f}/s"))  # fmt: skip
        peaks = {}
        for size in (1_000, 100_000):
            with tempfile.TemporaryDirectory() as folder:
                peaks[size] = _child(_state(Path(folder), size), 32, unpaced.url)["peak_bytes"]
        rows.append(("peak memory, 1,000 vs 100,000 recipients", "≤ +20 %, < 200 MB",
                     f"{peaks[1_000] / 1e6:.0f} MB vs {peaks[100_000] / 1e6:.0f} MB "
                     f"({peaks[100_000] / peaks[1_000] - 1:+.0%})"))  # fmt: skip
    finally:
        unpaced.stop()
    _print(rows + storm_vs_calm())


def _print(rows: list[tuple[str, str, str]]) -> None:
    print(f"Send benchmark — {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, "
          f"stand-in latency {LATENCY * 1000:.0f} ms\n")  # fmt: skip
    print("| measure | target | result |\n| --- | --- | --- |")
    for measure, target, result in rows:
        print(f"| {measure} | {target} | {result} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--send"]:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        print(json.dumps(send(Path(sys.argv[2]), int(sys.argv[3]))))
    else:
        count = (
            int(sys.argv[sys.argv.index("--sequential") + 1])
            if "--sequential" in sys.argv
            else 1000
        )
        main(count, sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None)

"""structlog set-up, once per process: JSON lines on stderr, or a console view on a terminal."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.testing import LogCapture

LogFormat = Literal["json", "console"]

log = structlog.get_logger("buzz")


def configure(fmt: LogFormat | None = None) -> str:
    """Configure structlog for this process; bind and return a fresh `run_id`.

    Under `structlog.testing.capture_logs` (a test running commands in process) the capture
    stays in place: only the `run_id` is bound."""
    if not any(isinstance(p, LogCapture) for p in structlog.get_config()["processors"]):
        _install(fmt)
    run_id = uuid.uuid4().hex[:12]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id=run_id)
    return run_id


def _install(fmt: LogFormat | None) -> None:
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=False,
    )


class _Stderr:
    """`sys.stderr` as it is at each write (click's test runner swaps it for a while)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def stage(event: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Log `event` once the block ends, with `duration_ms` and the counts the block added."""
    counts: dict[str, Any] = {}
    started = time.perf_counter()
    yield counts
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    log.info(event, **fields, **counts, duration_ms=duration_ms)

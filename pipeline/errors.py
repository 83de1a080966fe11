"""One root error, one subclass per kind of failure; each names the outcome of the run it
stops, and the outcome its exit code."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """The exit codes of the contract."""

    OK = 0
    FAILED = 1
    USAGE = 2
    SOME_FAILED = 3
    TEMPFAIL = 75


class Outcome(StrEnum):
    """How a run ended: one word, logged in `run_finished` and kept in the runs table.

    The closed set; every exit path of every command maps to exactly one of them.
    """

    SENT = "sent"  # an edition's send finished: every recipient sent (or skipped)
    DONE = "done"  # fetch, build, proof, import, unsubscribe, pair or unpair did what was asked
    NOTHING_NEW = "nothing_new"  # nothing to build or to send
    AWAITING_APPROVAL = "awaiting_approval"  # built and proofed to the reviewers; a person sends
    DRY_RUN = "dry_run"  # a rehearsal: nothing changed (never recorded in the runs table)
    PARTIAL = "partial"  # the send finished, but some recipients failed permanently
    INPUT_REJECTED = "input_rejected"  # lines of a subscribers CSV rejected (the others imported)
    FEEDS_UNAVAILABLE = "feeds_unavailable"  # every feed of a language failed: no edition
    LOCKED = "locked"  # another buzz process holds the state store's lock
    QUOTA_REACHED = "quota_reached"  # the account's 24-hour quota is used up; the rest pending
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # the provider kept failing; the rest pending
    ACCOUNT_REFUSED = "account_refused"  # the provider refused the account (paused, credentials)
    CONFIG_ERROR = "config_error"  # the configuration, a draft.toml or the environment is unusable
    USAGE_ERROR = "usage_error"  # arguments that cannot work (unknown edition, bad address…)
    ABORTED = "aborted"  # the person said no at the confirmation, or pressed Ctrl-C
    FAILED = "failed"  # a failure buzz knows but has no more precise word for
    CRASHED = "crashed"  # an unexpected exception (a bug): the log has its traceback

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of a run that ended so (a dry run: the code its real run would have,
        which the caller supplies; OK here)."""
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Outcome.SENT: ExitCode.OK,
    Outcome.DONE: ExitCode.OK,
    Outcome.NOTHING_NEW: ExitCode.OK,
    Outcome.AWAITING_APPROVAL: ExitCode.OK,
    Outcome.DRY_RUN: ExitCode.OK,
    Outcome.PARTIAL: ExitCode.SOME_FAILED,
    Outcome.INPUT_REJECTED: ExitCode.USAGE,
    Outcome.FEEDS_UNAVAILABLE: ExitCode.TEMPFAIL,
    Outcome.LOCKED: ExitCode.TEMPFAIL,
    Outcome.QUOTA_REACHED: ExitCode.TEMPFAIL,
    Outcome.PROVIDER_UNAVAILABLE: ExitCode.TEMPFAIL,
    Outcome.ACCOUNT_REFUSED: ExitCode.FAILED,
    Outcome.CONFIG_ERROR: ExitCode.USAGE,
    Outcome.USAGE_ERROR: ExitCode.USAGE,
    Outcome.ABORTED: ExitCode.USAGE,
    Outcome.FAILED: ExitCode.FAILED,
    Outcome.CRASHED: ExitCode.FAILED,
}


class BuzzError(Exception):
    """Root of every error buzz raises on purpose; the CLI prints it as one line.

    A subclass names its `outcome`; its exit code follows from it."""

    outcome: ClassVar[Outcome] = Outcome.FAILED

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of a run this error stops."""
        return self.outcome.exit_code


class ConfigError(BuzzError):
    """The configuration is unusable; carries every problem found, one per line."""

    outcome = Outcome.CONFIG_ERROR

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class UsageError(BuzzError):
    """A command was called with arguments that cannot work (unknown edition, bad file…)."""

    outcome = Outcome.USAGE_ERROR


class LockedError(BuzzError):
    """Another buzz process holds the state store's lock."""

    outcome = Outcome.LOCKED


class FeedError(BuzzError):
    """A feed could not be fetched or parsed; recorded per feed, never fatal to a run.

    `http_status` is the server's error status when that is what went wrong."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class DeliveryError(BuzzError):
    """The provider refused the whole send (account paused, credentials rejected…)."""

    outcome = Outcome.ACCOUNT_REFUSED


class BreakerTripped(BuzzError):
    """The provider kept failing (no answer for a while, or most recent calls failing): the
    send stopped, and every recipient not reached stays pending for the next run."""

    outcome = Outcome.PROVIDER_UNAVAILABLE

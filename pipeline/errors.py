"""One root error, one subclass per kind of failure; each maps to an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of the contract."""

    OK = 0
    FAILED = 1
    USAGE = 2
    SOME_FAILED = 3
    TEMPFAIL = 75


class BuzzError(Exception):
    """Root of every error buzz raises on purpose; the CLI prints it as one line."""

    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(BuzzError):
    """The configuration is unusable; carries every problem found, one per line."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class UsageError(BuzzError):
    """A command was called with arguments that cannot work (unknown edition, bad file…)."""

    exit_code = ExitCode.USAGE


class LockedError(BuzzError):
    """Another buzz process holds the state store's lock."""

    exit_code = ExitCode.TEMPFAIL


class FeedError(BuzzError):
    """A feed could not be fetched or parsed; recorded per feed, never fatal to a run."""


class DeliveryError(BuzzError):
    """The provider refused the whole send (account paused, credentials rejected…)."""

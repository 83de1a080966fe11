"""The benchmarks' measure of memory: a process's own peak resident set."""

from __future__ import annotations

from pathlib import Path


def peak_rss() -> int:
    """This process's own peak resident memory, in bytes (VmHWM). Not `getrusage`'s ru_maxrss:
    Linux carries that across exec, so a child started by a large parent reports the parent's."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024

"""Subject and preheader patterns: the placeholders each may use, checked when a pattern is read
and filled when an edition is rendered — one grammar for both.

A pattern is text with placeholders in braces, `{title}`, as in Python's `str.format` but
narrower: only the placeholders of its kind, by name, with no format spec (`{title:>10}`),
conversion (`{title!r}`), attribute or index; `{{` and `}}` write a literal brace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator

from pipeline.errors import UsageError

SUBJECT = ("name", "title")  # the newsletter's name; the first story's title
PREHEADER = ("titles", "summary")  # the other stories' titles; the first story's summary

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class PatternError(UsageError, ValueError):
    """A pattern that cannot be filled; its message lists every problem found. A ValueError
    for pydantic (which names the key), a UsageError (exit 2) anywhere else."""


def problems(pattern: str, allowed: tuple[str, ...]) -> list[str]:
    """What is wrong with `pattern` given the placeholders it may use (empty: nothing)."""
    found = []
    use = ", ".join(f"{{{name}}}" for name in allowed)
    for match in _TOKEN.finditer(pattern):
        piece, field = match[0], match[1]
        if piece in ("{{", "}}"):
            continue
        if field is None:
            other = "closing '}'" if piece == "{" else "opening '{'"
            found.append(
                f"unbalanced brace {piece!r} at character {match.start() + 1} has no {other}"
                f" (write {piece * 2} for a literal brace)"
            )
        elif field.strip() == "" or field.isdigit():
            found.append(f"positional placeholder {piece} (name one: {use})")
        elif "!" in field or ":" in field:
            name = re.split(r"[!:]", field, maxsplit=1)[0]
            found.append(f"{piece}: no conversion or format spec is allowed (write {{{name}}})")
        elif field not in allowed:
            found.append(f"unknown placeholder {piece} (use {use})")
    return found


def _validator(allowed: tuple[str, ...]) -> AfterValidator:
    """The pydantic check of a pattern field: its problems become `file: key: problem`."""

    def checked(pattern: str) -> str:
        found = problems(pattern, allowed)
        if found:
            raise PatternError("; ".join(found))
        return pattern

    return AfterValidator(checked)


Subject = Annotated[str, _validator(SUBJECT)]  # a subject pattern field (buzz.toml, draft.toml)
Preheader = Annotated[str, _validator(PREHEADER)]  # a preheader pattern field (buzz.toml)


def fill(pattern: str, values: Mapping[str, str]) -> str:
    """`pattern` with each placeholder replaced by its value (the values are not patterns:
    braces in a title stay as they are); PatternError when `pattern` is not valid (an
    edition stored before its pattern was checked)."""
    found = problems(pattern, tuple(values))
    if found:
        raise PatternError(f"pattern {pattern!r}: {'; '.join(found)}")
    return _TOKEN.sub(lambda m: m[0][0] if m[1] is None else values[m[1]], pattern)

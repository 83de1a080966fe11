"""Tests for pipeline.patterns: what a subject or preheader pattern may hold, and its filling."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline import patterns
from pipeline.errors import ExitCode, UsageError
from pipeline.patterns import PREHEADER, SUBJECT, PatternError
from tests.conftest import Buzz
from tests.helpers import built_draft


def test_a_valid_pattern_has_no_problem() -> None:
    """Known placeholders, plain text and escaped braces are accepted."""
    assert patterns.problems("{name}: {title} {{beta}}", SUBJECT) == []
    assert patterns.problems("Also: {titles} — {summary}", PREHEADER) == []
    assert patterns.problems("", SUBJECT) == []


@pytest.mark.parametrize(
    ("pattern", "allowed", "problem"),
    [
        pytest.param("{name}: {titel}", SUBJECT,
                     "unknown placeholder {titel} (use {name}, {title})", id="typo"),
        pytest.param("{title}", PREHEADER,
                     "unknown placeholder {title} (use {titles}, {summary})", id="other-kind"),
        pytest.param("{name}: {title", SUBJECT,
                     "unbalanced brace '{' at character 9 has no closing '}'"
                     " (write {{ for a literal brace)", id="unclosed"),
        pytest.param("title}", SUBJECT,
                     "unbalanced brace '}' at character 6 has no opening '{'"
                     " (write }} for a literal brace)", id="unopened"),
        pytest.param("{title!r}", SUBJECT,
                     "{title!r}: no conversion or format spec is allowed (write {title})",
                     id="conversion"),
        pytest.param("{title:>10}", SUBJECT,
                     "{title:>10}: no conversion or format spec is allowed (write {title})",
                     id="format-spec"),
        pytest.param("{}", SUBJECT, "positional placeholder {} (name one: {name}, {title})",
                     id="positional"),
        pytest.param("{0}", SUBJECT, "positional placeholder {0} (name one: {name}, {title})",
                     id="numbered"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_what_to_write(
    pattern: str, allowed: tuple[str, ...], problem: str
) -> None:
    """A typo, an unbalanced brace, a conversion, a format spec or a positional placeholder is
    reported with its place or the placeholders that pattern may use."""
    assert patterns.problems(pattern, allowed) == [problem]


def test_every_problem_of_a_pattern_is_listed() -> None:
    """Two mistakes in one pattern are two problems, in order."""
    assert len(patterns.problems("{titel} {name", SUBJECT)) == 2


def test_fill_replaces_placeholders_and_unescapes_braces() -> None:
    """Values are put in once: a brace or a placeholder inside a title stays as it is."""
    filled = patterns.fill("{{{name}}}: {title}", {"name": "IT Buzz", "title": "Use {name}"})
    assert filled == "{IT Buzz}: Use {name}"


def test_fill_refuses_an_invalid_pattern_as_a_usage_error() -> None:
    """A pattern never checked (an old stored edition) stops with exit 2, naming it."""
    with pytest.raises(PatternError, match=r"pattern '\{titel\}': unknown placeholder") as caught:
        patterns.fill("{titel}", {"name": "n", "title": "t"})
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == ExitCode.USAGE


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_draft_subject_typo_stops_build_and_run_with_nothing_written_or_sent(
    buzz: Buzz, demo: Path
) -> None:
    """`{titel}` in draft.toml: `buzz build` and `buzz run` exit 2 naming file and key; the
    edition folder, the stored edition and the outbox are untouched."""
    draft_file = built_draft(buzz, demo)
    draft_file.write_text(
        draft_file.read_text().replace('[en]\nsubject = ""', '[en]\nsubject = "{name}: {titel}"')
    )
    before = _tree(demo / "var" / "out")
    db = sqlite3.connect(demo / "var" / "buzz.sqlite")
    editions = db.execute("SELECT * FROM editions").fetchall()
    for command in (("build",), ("run", "--yes")):
        result = buzz(*command)
        assert result.returncode == 2, result.stderr
        assert (
            f"buzz: {draft_file.resolve()}: en.subject: unknown placeholder {{titel}}"
            " (use {name}, {title})"
        ) in result.stderr.splitlines()
        assert _tree(demo / "var" / "out") == before
        assert db.execute("SELECT * FROM editions").fetchall() == editions
    assert not (demo / "var" / "out" / "outbox").exists()

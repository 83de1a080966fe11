"""The draft file: marketing's adjustments to an edition, in its folder (`draft.toml`).

Written once when an edition is first built, listing its stories; edited by a person (subject
and intro per language, story order, stories left out, translation pairs to force); read again
by every `buzz build`, so the adjustments survive rebuilds. Invalid edits are reported with the
file, the line or key, and the problem, and nothing is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import patterns
from pipeline.config import OneLine, describe_error
from pipeline.errors import ConfigError
from pipeline.models import Edition, Story

FILE = "draft.toml"


class _Language(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    subject: Annotated[patterns.Subject, Field(max_length=200)] = ""
    intro: Annotated[str, Field(max_length=2000)] = ""


class _Stories(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    order: list[str] = []
    exclude: list[str] = []
    pairs: list[Annotated[list[OneLine], Field(min_length=2, max_length=2)]] = []


class _Draft(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    en: _Language = _Language()
    fr: _Language = _Language()
    stories: _Stories = _Stories()


@dataclass(frozen=True, slots=True)
class Adjustments:
    """What marketing changed in a draft."""

    subjects: dict[str, str] = field(default_factory=dict)
    intros: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    exclude: set[str] = field(default_factory=set)
    pairs: list[tuple[str, str]] = field(default_factory=list)


def read(folder: Path) -> Adjustments:
    """The adjustments in `folder/draft.toml` (none when there is no such file)."""
    path = folder / FILE
    if not path.exists():
        return Adjustments()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        doc = _Draft.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except ValidationError as exc:
        raise ConfigError([describe_error(path, err) for err in exc.errors()]) from None
    languages = {"en": doc.en, "fr": doc.fr}
    return Adjustments(
        subjects={lang: part.subject.strip() for lang, part in languages.items() if part.subject},
        intros={lang: part.intro.strip() for lang, part in languages.items() if part.intro},
        order=doc.stories.order,
        exclude=set(doc.stories.exclude),
        pairs=[(a, b) for a, b in doc.stories.pairs],
    )


def apply(edition: Edition, adjustments: Adjustments, folder: Path) -> Edition:
    """`edition` with the stories reordered and left out, subjects and intros set. A guid
    that names no story of the edition is an error (a typo must not go unnoticed)."""
    guids = {post.guid: story for story in edition.stories for post in story.posts.values()}
    unknown = [g for g in (*adjustments.order, *adjustments.exclude) if g not in guids]
    if unknown:
        raise ConfigError(
            [f"{folder / FILE}: stories: {g!r} is not a post of this edition" for g in unknown]
        )
    kept = [i for i, story in enumerate(edition.stories) if not _named(story, adjustments.exclude)]
    position = {id(story): i for i, story in enumerate(edition.stories)}
    ranked = [position[id(guids[g])] for g in adjustments.order]
    ordered = [edition.stories[i] for i in dict.fromkeys([*ranked, *kept]) if i in kept]
    return replace(
        edition,
        stories=tuple(ordered),
        subjects=adjustments.subjects,
        intros=adjustments.intros,
    )


def digest(folder: Path, edition: Edition) -> str:
    """A fingerprint of the draft a build of `edition` applies: the bytes of
    `folder/draft.toml`, or of the template the build is about to write there."""
    path = folder / FILE
    data = path.read_bytes() if path.exists() else template(edition).encode()
    return hashlib.sha256(data).hexdigest()


def _named(story: Story, guids: set[str]) -> bool:
    return any(post.guid in guids for post in story.posts.values())


def template(edition: Edition) -> str:
    """The first draft.toml of an edition: empty adjustments and its stories listed."""
    lines = [
        f"# Adjustments to edition {edition.id}. Edit, save, then run `buzz build`: they are",
        "# kept across rebuilds. An empty value keeps the default. A subject may use {title}",
        "# (the first story's title) and {name} (the newsletter's name); {{ and }} write a",
        "# literal brace.",
        "",
    ]
    for lang in edition.languages:
        lines += [f"[{lang}]", 'subject = ""', 'intro = ""', ""]
    lines += [
        "[stories]",
        "# The order of the stories, by the guid of one of their posts; stories not listed",
        "# follow, newest first. Move the lines to reorder.",
        "order = [",
    ]
    for story in edition.stories:
        post = next(iter(story.posts.values()))
        title = post.title.replace("\n", " ")[:70]
        lines.append(f"  {json.dumps(post.guid)},  # {title}")
    lines += [
        "]",
        "# Stories to leave out of this edition (they wait for the next one), by guid.",
        "exclude = []",
        '# Translation pairs to force, by guid or URL: [["English", "French"], ...]',
        "pairs = []",
        "",
    ]
    return "\n".join(lines)

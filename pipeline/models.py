"""Frozen values handed from stage to stage: posts, stories, editions, recipients."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Post:
    """One blog post, normalised: plain-text title and summary, sanitized HTML, http(s) URLs."""

    guid: str
    lang: str
    url: str  # "" when the entry had no link: archived, never a story nor a related pick
    title: str
    summary: str
    published: datetime
    content_html: str = ""
    image: str | None = None
    categories: tuple[str, ...] = ()
    author: str = ""
    feed_url: str = ""

    def brief(self) -> dict[str, object]:
        """The POST object of `edition.json`."""
        return {
            "guid": self.guid,
            "url": self.url,
            "title": self.title,
            "published": self.published.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Related:
    """A related archive post and the score that chose it."""

    post: Post
    score: float
    reasons: tuple[str, ...] = ()

    def brief(self) -> dict[str, object]:
        """The POST object of `edition.json`, with its score and why it was chosen."""
        return {**self.post.brief(), "score": round(self.score, 4), "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """What a translation pair rests on, as `buzz explain` and `edition.json` show it.

    `basis`: "hreflang" (a page names the other), "content" (the two texts agree: `content`
    is how far, from 0 to 1, and the shared markers say on what), "marketing" (`buzz pair`, a
    draft's pairs) or "unrecorded" (paired before the evidence was kept, nothing else known).
    The image, the publication times and the author only support a pair that the content
    makes.
    """

    basis: str = "marketing"
    content: float = 0.0
    numbers: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()  # code and quotations
    stems: int = 0  # word stems shared by matching paragraphs
    structure: str = ""  # the block structure both posts have, when it is the same
    same_image: bool = False
    hours_apart: float = 0.0
    same_author: bool = False

    def brief(self) -> dict[str, object]:
        """The `evidence` object of `edition.json`."""
        doc: dict[str, object] = {"basis": self.basis}
        if self.basis != "unrecorded":
            doc |= {
                "content": round(self.content, 3),
                "shared": {
                    "numbers": list(self.numbers),
                    "names": list(self.names),
                    "links": list(self.links),
                    "quotes": list(self.quotes),
                    "stems": self.stems,
                },
                "structure": self.structure,
                "same_image": self.same_image,
                "hours_apart": round(self.hours_apart, 1),
                "same_author": self.same_author,
            }
        return doc

    @classmethod
    def from_brief(cls, doc: dict[str, Any]) -> PairEvidence:
        """The inverse of `brief`."""
        shared = doc.get("shared", {})
        return cls(
            basis=doc["basis"],
            content=doc.get("content", 0.0),
            numbers=tuple(shared.get("numbers", ())),
            names=tuple(shared.get("names", ())),
            links=tuple(shared.get("links", ())),
            quotes=tuple(shared.get("quotes", ())),
            stems=shared.get("stems", 0),
            structure=doc.get("structure", ""),
            same_image=doc.get("same_image", False),
            hours_apart=doc.get("hours_apart", 0.0),
            same_author=doc.get("same_author", False),
        )


@dataclass(frozen=True, slots=True)
class Pairing:
    """How sure buzz is that a story's two posts translate each other, and why."""

    confidence: float
    evidence: PairEvidence

    def brief(self) -> dict[str, object]:
        """The `pair` object of a story in `edition.json`."""
        return {"confidence": round(self.confidence, 3), "evidence": self.evidence.brief()}

    @classmethod
    def from_brief(cls, doc: dict[str, Any]) -> Pairing:
        """The inverse of `brief`."""
        return cls(doc["confidence"], PairEvidence.from_brief(doc["evidence"]))


@dataclass(frozen=True, slots=True)
class Story:
    """One story of an edition: a post per language (a translation pair, or one alone)."""

    posts: dict[str, Post]
    related: dict[str, tuple[Related, ...]] = field(default_factory=dict)
    pair: Pairing | None = None  # for a translation pair

    @property
    def published(self) -> datetime:
        """When the story first appeared, in any language."""
        return min(post.published for post in self.posts.values())


class EditionState(StrEnum):
    """An edition's lifecycle, as recorded in the store."""

    DRAFT = "draft"
    PROOFED = "proofed"
    SENDING = "sending"
    SENT = "sent"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class Edition:
    """A composed newsletter: its stories in every configured language."""

    id: str
    created_at: datetime
    languages: tuple[str, ...]
    stories: tuple[Story, ...]
    subjects: dict[str, str] = field(default_factory=dict)  # marketing's, per language
    intros: dict[str, str] = field(default_factory=dict)
    draft_digest: str = ""  # the draft.toml this build applied (see `draft.digest`)

    def stories_in(self, lang: str) -> tuple[Story, ...]:
        """The stories that have a post in `lang`, in edition order."""
        return tuple(story for story in self.stories if lang in story.posts)

    def to_json(self) -> dict[str, object]:
        """The machine-readable `edition.json` document of the contract."""
        stories: list[dict[str, object]] = []
        for story in self.stories:
            doc: dict[str, object] = {lang: post.brief() for lang, post in story.posts.items()}
            doc["related"] = {
                lang: [rel.brief() for rel in picks] for lang, picks in story.related.items()
            }
            if story.pair is not None:
                doc["pair"] = story.pair.brief()
            stories.append(doc)
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "languages": list(self.languages),
            "stories": stories,
        }


class DeliveryState(StrEnum):
    """A recipient's row in a send's ledger."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who receives one message, and in which language."""

    email: str
    lang: str
    name: str = ""

"""Tests for pipeline.related: same subject, same language, never itself, no filler."""

from __future__ import annotations

from pipeline.related import RelatedIndex
from tests.helpers import make_post

SECURITY = ("Security",)
CLOUD = ("Cloud",)


def _archive() -> list:  # type: ignore[type-arg]
    return [
        make_post("r1", title="Ransomware attacks on small businesses", categories=SECURITY,
                  summary="Backups, patching and phishing awareness stop ransomware."),
        make_post("r2", title="Phishing lures written by AI", categories=SECURITY,
                  summary="Phishing emails now look perfect; train staff to check senders."),
        make_post("c1", title="Cutting the cloud bill", categories=CLOUD,
                  summary="Reserved instances and savings plans reduce cloud costs."),
        make_post("f1", "fr", "Les rançongiciels et les PME", categories=("Sécurité",),
                  summary="Les rançongiciels visent les PME."),
    ]  # fmt: skip


def test_picks_share_the_subject_and_exclude_the_post_itself() -> None:
    """A ransomware story gets the security posts, not the cloud one, never itself."""
    archive = _archive()
    story = make_post("new", title="Ransomware and phishing: a new wave", categories=SECURITY,
                      summary="A new ransomware wave starts with phishing emails.")  # fmt: skip
    picks = RelatedIndex([*archive, story]).pick(story, 3)
    assert [rel.post.guid for rel in picks][:1] == ["r1"]
    assert {rel.post.guid for rel in picks} <= {"r1", "r2"}
    assert all(rel.score > 0 for rel in picks)


def test_never_another_language_nor_an_excluded_post() -> None:
    """Other-language posts and posts of the same edition are never picked."""
    story = make_post("new", title="Ransomware and phishing", categories=SECURITY)
    picks = RelatedIndex(_archive()).pick(story, 3, exclude={"r1"})
    guids = {rel.post.guid for rel in picks}
    assert "f1" not in guids
    assert "r1" not in guids


def test_no_filler_when_nothing_is_related() -> None:
    """A story on a subject absent from the archive gets no related posts at all."""
    story = make_post("new", title="Our office moves to Montreal", categories=("News",))
    assert RelatedIndex(_archive()).pick(story, 3) == ()


def test_same_archive_same_picks() -> None:
    """Picks are deterministic."""
    story = make_post("new", title="Ransomware and phishing", categories=SECURITY)
    assert RelatedIndex(_archive()).pick(story, 3) == RelatedIndex(_archive()).pick(story, 3)

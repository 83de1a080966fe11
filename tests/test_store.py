"""Tests for pipeline.store: schema, archive identity, editions, the ledger, the lock."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.errors import LockedError
from pipeline.models import DeliveryState, Edition, EditionState, Recipient, Story
from pipeline.store import MIGRATIONS, Store, Subscriber, locked
from tests.helpers import archive, lock_held_by_another_process, make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.sqlite")


def test_schema_is_versioned_and_in_wal_mode(store: Store, tmp_path: Path) -> None:
    """A new file gets every migration; reopening applies none twice."""
    assert store.schema_version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    assert Store(tmp_path / "state.sqlite").schema_version == len(MIGRATIONS)


def test_save_posts_inserts_new_and_updates_edits(store: Store) -> None:
    """Same guid, new text: one post, updated, not new again."""
    post = make_post("g1", title="First title")
    assert store.save_posts([post], set(), NOW) == 1
    assert store.save_posts([replace(post, title="Edited title")], set(), NOW) == 0
    [kept] = archive(store, "en")
    assert kept.title == "Edited title"


def test_republished_post_with_new_guid_is_the_same_post(store: Store) -> None:
    """A new guid on the same canonical URL is not a new post."""
    post = make_post("g1")
    store.save_posts([post], set(), NOW)
    assert store.save_posts([replace(post, guid="g2")], set(), NOW) == 0
    assert [p.guid for p in archive(store, "en")] == ["g1"]


def test_unsent_posts_skip_baseline_future_and_sent_editions(store: Store) -> None:
    """Baseline posts, posts dated in the future and posts of a started edition are not new."""
    sent, draft, old = make_post("sent"), make_post("draft"), make_post("old")
    future = make_post("future", published=NOW + timedelta(days=1))
    store.save_posts([sent, draft, old, future], {"old"}, NOW)
    store.save_draft(Edition("e1", NOW, ("en",), (Story({"en": sent}),)))
    store.set_edition_state("e1", EditionState.SENT)
    store.save_draft(Edition("e2", NOW, ("en",), (Story({"en": draft}),)))
    assert [p.guid for p in store.unsent_posts("en", NOW)] == ["draft"]


def test_a_started_edition_cannot_be_overwritten_as_a_draft(store: Store) -> None:
    """Rebuilding touches drafts only."""
    edition = Edition("e1", NOW, ("en",), (Story({"en": make_post("a")}),))
    store.save_draft(edition)
    store.set_edition_state("e1", EditionState.SENDING)
    with pytest.raises(ValueError, match="not a draft"):
        store.save_draft(edition)


def test_edition_round_trips_with_a_full_snapshot(store: Store) -> None:
    """What was built is what is loaded for sending."""
    post = make_post("a", categories=("x",), image="https://blog.example.com/i.jpg")
    edition = Edition("e1", NOW, ("en",), (Story({"en": post}),))
    store.save_draft(edition)
    assert store.edition("e1") == (EditionState.DRAFT, edition)
    assert store.edition("nope") is None


def test_ledger_is_frozen_once(store: Store) -> None:
    """The audience is written into the ledger at the first send only."""
    store.save_draft(Edition("e1", NOW, ("en",), ()))
    first = [Recipient("a@example.com", "en"), Recipient("b@example.com", "en")]
    assert store.freeze_audience("e1", "en", first) == 2
    assert store.freeze_audience("e1", "en", [Recipient("c@example.com", "en")]) == 0
    assert store.delivery_counts("e1")["en"]["pending"] == 2


def test_rows_left_sending_become_in_doubt(store: Store) -> None:
    """After a crash, a row marked sending is reported in doubt."""
    store.save_draft(Edition("e1", NOW, ("en",), ()))
    store.freeze_audience("e1", "en", [Recipient("a@example.com", "en")])
    store.mark("e1", Recipient("a@example.com", "en"), DeliveryState.SENDING)
    assert store.mark_interrupted("e1", "en") == 1
    counts = store.delivery_counts("e1")["en"]
    assert counts["in_doubt"] == 1
    assert counts["sending"] == 0


def test_import_never_undoes_an_unsubscribe(store: Store) -> None:
    """Re-importing an unsubscribed address keeps it unsubscribed (case-insensitively)."""
    sub = Subscriber("Ann@Example.com", "en", "form", "2026-01-01T00:00:00+00:00")
    assert store.upsert_subscribers([sub], NOW) == 1
    assert store.unsubscribe("ann@example.com", NOW)
    assert store.upsert_subscribers([sub], NOW) == 0
    [kept] = store.subscribers()
    assert kept.unsubscribed_at is not None
    assert not store.unsubscribe("nobody@example.com", NOW)


def test_a_failed_transaction_changes_nothing(store: Store) -> None:
    """An error inside a transaction rolls it back."""
    insert = "INSERT INTO editions (id, created_at, state, doc) VALUES ('x', 't', 'draft', '{}')"

    def insert_twice() -> None:
        with store.transaction() as tx:
            tx.execute(insert)
            tx.execute(insert)

    with pytest.raises(sqlite3.IntegrityError):
        insert_twice()
    assert store.editions() == []


def test_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path: Path) -> None:
    """A held lock raises LockedError; a lock whose holder was killed is free again."""
    state = tmp_path / "state.sqlite"
    with (
        lock_held_by_another_process(state),
        pytest.raises(LockedError, match="another buzz process"),
        locked(state),
    ):
        pass
    with locked(state):
        pass


def test_an_undated_post_keeps_its_first_seen_date(store: Store) -> None:
    """An entry without a date is dated when first seen; later fetches do not move it."""
    post = make_post("g1", published=NOW)
    store.save_posts([post], set(), NOW)
    store.save_posts([replace(post, published=NOW + timedelta(days=2))], set(), NOW)
    [kept] = archive(store, "en")
    assert kept.published == NOW

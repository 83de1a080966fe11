"""The SQLite state store: feeds' health, the post archive, editions, subscribers, the ledger.

One file (WAL mode), a versioned schema migrated on open, every change in a transaction.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import LockedError
from pipeline.models import (
    DeliveryState,
    Edition,
    EditionState,
    Pairing,
    Post,
    Recipient,
    Related,
    Story,
)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE feeds (
        url TEXT PRIMARY KEY,
        lang TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        first_fetched_at TEXT,
        last_success_at TEXT,
        last_error TEXT,
        last_error_at TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        entries INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE posts (
        guid TEXT PRIMARY KEY,
        lang TEXT NOT NULL,
        url TEXT NOT NULL,
        doc TEXT NOT NULL,
        published TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        baseline INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX posts_by_url ON posts (url);
    CREATE INDEX posts_by_lang ON posts (lang, published);
    CREATE TABLE editions (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE TABLE edition_posts (
        edition_id TEXT NOT NULL REFERENCES editions (id) ON DELETE CASCADE,
        guid TEXT NOT NULL,
        PRIMARY KEY (edition_id, guid)
    );
    CREATE TABLE subscribers (
        email TEXT PRIMARY KEY COLLATE NOCASE,
        lang TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        consent_source TEXT NOT NULL,
        consent_at TEXT NOT NULL,
        unsubscribed_at TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        edition_id TEXT NOT NULL REFERENCES editions (id),
        email TEXT NOT NULL COLLATE NOCASE,
        lang TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        message_id TEXT,
        last_error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (edition_id, email)
    );
    CREATE INDEX deliveries_by_state ON deliveries (edition_id, lang, state);
    """,
    """
    CREATE TABLE sends (
        edition_id TEXT NOT NULL REFERENCES editions (id),
        lang TEXT NOT NULL,
        frozen_at TEXT NOT NULL,
        recipients INTEGER NOT NULL,
        PRIMARY KEY (edition_id, lang)
    );
    INSERT INTO sends (edition_id, lang, frozen_at, recipients)
        SELECT edition_id, lang, min(updated_at), count(*) FROM deliveries
        GROUP BY edition_id, lang;
    """,
    """
    CREATE TABLE terms (
        id INTEGER PRIMARY KEY,
        lang TEXT NOT NULL,
        term TEXT NOT NULL,
        UNIQUE (lang, term)
    );
    CREATE TABLE post_terms (
        guid TEXT PRIMARY KEY REFERENCES posts (guid) ON DELETE CASCADE,
        lang TEXT NOT NULL,
        ids BLOB NOT NULL,
        weights BLOB NOT NULL
    );
    CREATE INDEX post_terms_by_lang ON post_terms (lang);
    CREATE TABLE post_links (
        guid TEXT NOT NULL REFERENCES posts (guid) ON DELETE CASCADE,
        target TEXT NOT NULL,
        PRIMARY KEY (guid, target)
    );
    CREATE INDEX post_links_by_target ON post_links (target);
    CREATE TABLE translations (
        guid TEXT PRIMARY KEY,
        partner TEXT NOT NULL UNIQUE,
        confidence REAL NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE pair_overrides (
        a TEXT NOT NULL,
        b TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('force', 'break')),
        decided_at TEXT NOT NULL,
        PRIMARY KEY (a, b)
    );
    CREATE TABLE page_alternates (
        url TEXT PRIMARY KEY,
        fetched_at TEXT NOT NULL,
        alternates TEXT,
        error TEXT
    );
    ALTER TABLE posts ADD COLUMN pair_checked INTEGER NOT NULL DEFAULT 0;
    """,
    """
    CREATE TABLE deliveries_by_language (
        edition_id TEXT NOT NULL REFERENCES editions (id),
        email TEXT NOT NULL COLLATE NOCASE,
        lang TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        message_id TEXT,
        last_error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (edition_id, lang, email)
    );
    INSERT INTO deliveries_by_language SELECT * FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_by_language RENAME TO deliveries;
    CREATE INDEX deliveries_by_state ON deliveries (edition_id, lang, state);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        summary TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE runs ADD COLUMN command TEXT NOT NULL DEFAULT 'run';
    CREATE INDEX runs_by_command ON runs (command, finished_at);
    """,
    """
    ALTER TABLE feeds ADD COLUMN body_sha256 TEXT;
    """,
    """
    ALTER TABLE translations ADD COLUMN evidence TEXT;
    """,
)

STARTED_STATES = (EditionState.SENDING, EditionState.SENT, EditionState.PARTIAL)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def post_to_doc(post: Post) -> dict[str, Any]:
    """A post as stored: every field, dates in ISO 8601."""
    return {
        "guid": post.guid,
        "lang": post.lang,
        "url": post.url,
        "title": post.title,
        "summary": post.summary,
        "published": post.published.isoformat(),
        "content_html": post.content_html,
        "image": post.image,
        "categories": list(post.categories),
        "author": post.author,
        "feed_url": post.feed_url,
    }


def post_from_doc(doc: dict[str, Any]) -> Post:
    """The inverse of `post_to_doc`."""
    return Post(
        guid=doc["guid"],
        lang=doc["lang"],
        url=doc["url"],
        title=doc["title"],
        summary=doc["summary"],
        published=datetime.fromisoformat(doc["published"]),
        content_html=doc["content_html"],
        image=doc["image"],
        categories=tuple(doc["categories"]),
        author=doc["author"],
        feed_url=doc["feed_url"],
    )


def edition_to_doc(edition: Edition) -> dict[str, Any]:
    """An edition as stored: a full snapshot of its posts, so a send sends what was built."""
    return {
        "id": edition.id,
        "created_at": edition.created_at.isoformat(),
        "languages": list(edition.languages),
        "subjects": edition.subjects,
        "intros": edition.intros,
        "draft_digest": edition.draft_digest,
        "stories": [
            {
                "posts": {lang: post_to_doc(post) for lang, post in story.posts.items()},
                "related": {
                    lang: [
                        {"post": post_to_doc(r.post), "score": r.score, "reasons": list(r.reasons)}
                        for r in picks
                    ]
                    for lang, picks in story.related.items()
                },
                "pair": story.pair.brief() if story.pair else None,
            }
            for story in edition.stories
        ],
    }


def edition_from_doc(doc: dict[str, Any]) -> Edition:
    """The inverse of `edition_to_doc`."""
    return Edition(
        id=doc["id"],
        created_at=datetime.fromisoformat(doc["created_at"]),
        languages=tuple(doc["languages"]),
        stories=tuple(
            Story(
                posts={lang: post_from_doc(post) for lang, post in story["posts"].items()},
                related={
                    lang: tuple(
                        Related(post_from_doc(r["post"]), r["score"], tuple(r.get("reasons", ())))
                        for r in picks
                    )
                    for lang, picks in story["related"].items()
                },
                pair=Pairing.from_brief(story["pair"]) if story.get("pair") else None,
            )
            for story in doc["stories"]
        ),
        subjects=doc.get("subjects", {}),
        intros=doc.get("intros", {}),
        draft_digest=doc.get("draft_digest", ""),
    )


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of one feed."""

    url: str
    lang: str
    etag: str | None
    last_modified: str | None
    first_fetched_at: str | None
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None
    consecutive_failures: int
    entries: int
    body_sha256: str | None = None  # of the body last parsed: the same bytes are not parsed again

    @property
    def ok(self) -> bool:
        """Whether the last fetch succeeded."""
        return self.last_success_at is not None and self.consecutive_failures == 0


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A local subscriber, with the consent record CASL asks for."""

    email: str
    lang: str
    consent_source: str
    consent_at: str
    name: str = ""
    unsubscribed_at: str | None = None
    attributes: str = "{}"


class Store:
    """Every read and write of the state file goes through here.

    A store opened as a `rehearsal` (a dry run) works on a private copy of the file, taken
    when it opens and deleted when it closes: every stage reads its own writes, and nothing
    ever reaches the file. (SQLite has one writer: an outer transaction rolled back at the
    end would hold the file's write lock for the whole dry run, and an unsubscribe arriving
    meanwhile would wait, then fail. A server database realises the same promise with one
    transaction that is never committed.)
    """

    def __init__(self, path: Path, *, rehearsal: bool = False) -> None:
        self.path = path
        self.rehearsal = rehearsal
        # one connection, shared by the sender threads under `lock`
        self.db = self._rehearsal_copy(path) if rehearsal else self._connect(path)
        self.lock = threading.RLock()
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)

    @staticmethod
    def _rehearsal_copy(path: Path) -> sqlite3.Connection:
        """A private temporary database (SQLite deletes it on close, or when the process
        dies) holding a consistent snapshot of `path`, which is only read, never created."""
        copy = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        if path.exists():
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            try:
                source.backup(copy)
            finally:
                source.close()
        return copy

    def close(self) -> None:
        """Close the connection (a rehearsal's copy is deleted with it)."""
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of change: committed on success, rolled back on any error."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as tx:
                for statement in script.split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        """The schema version applied to the file."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    # Feeds ---------------------------------------------------------------------------------

    def feed_state(self, url: str) -> FeedState | None:
        """What is known of `url`, or None for a feed never fetched."""
        row = self.db.execute("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
        return FeedState(**dict(row)) if row else None

    def feed_states(self) -> list[FeedState]:
        """Every feed ever fetched, by language then URL."""
        rows = self.db.execute("SELECT * FROM feeds ORDER BY lang, url").fetchall()
        return [FeedState(**dict(row)) for row in rows]

    def record_feed_success(
        self,
        url: str,
        lang: str,
        *,
        etag: str | None,
        last_modified: str | None,
        entries: int | None,
        now: datetime,
        body_sha256: str | None = None,
    ) -> None:
        """Remember a good fetch (`entries` and `body_sha256` None: not modified, or the same
        body as last time — the count and the hash stay)."""
        with self.transaction() as tx:
            tx.execute(
                """INSERT INTO feeds (url, lang, etag, last_modified, first_fetched_at,
                       last_success_at, entries, body_sha256)
                   VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, 0), ?)
                   ON CONFLICT (url) DO UPDATE SET
                       lang = excluded.lang, etag = excluded.etag,
                       last_modified = excluded.last_modified,
                       first_fetched_at = COALESCE(feeds.first_fetched_at,
                                                   excluded.first_fetched_at),
                       last_success_at = excluded.last_success_at,
                       consecutive_failures = 0, last_error = NULL,
                       entries = COALESCE(?, feeds.entries),
                       body_sha256 = COALESCE(excluded.body_sha256, feeds.body_sha256)""",
                (url, lang, etag, last_modified, _iso(now), _iso(now), entries, body_sha256,
                 entries),
            )  # fmt: skip

    def record_feed_failure(self, url: str, lang: str, error: str, now: datetime) -> None:
        """Remember a failed fetch and count consecutive failures."""
        with self.transaction() as tx:
            tx.execute(
                """INSERT INTO feeds (url, lang, last_error, last_error_at, consecutive_failures)
                   VALUES (?, ?, ?, ?, 1)
                   ON CONFLICT (url) DO UPDATE SET
                       last_error = excluded.last_error, last_error_at = excluded.last_error_at,
                       consecutive_failures = feeds.consecutive_failures + 1""",
                (url, lang, error, _iso(now)),
            )

    # Posts ---------------------------------------------------------------------------------

    def save_posts(self, posts: Iterable[Post], baseline: set[str], now: datetime) -> int:
        """Insert new posts and update edited ones; return how many were new.

        A post is the same post when its guid matches, or when its canonical URL matches a post
        of the same language (a republished post with a new guid; a post without a link, whose
        `url` is "", is matched by its guid alone). An update keeps the earliest
        publication time seen (an undated entry is dated when first seen, and stays so). Posts
        whose guid is in `baseline` are archived as already published when first stored.
        """
        new = 0
        with self.transaction() as tx:
            for post in posts:
                row = tx.execute(
                    "SELECT guid, published, doc FROM posts "
                    "WHERE guid = ? OR (url = ? AND url != '' AND lang = ?) "
                    "ORDER BY guid = ? DESC LIMIT 1",
                    (post.guid, post.url, post.lang, post.guid),
                ).fetchone()
                if row is None:
                    new += 1
                    tx.execute(
                        "INSERT INTO posts (guid, lang, url, doc, published, first_seen_at, "
                        "baseline) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            post.guid,
                            post.lang,
                            post.url,
                            json.dumps(post_to_doc(post), ensure_ascii=False),
                            _iso(post.published),
                            _iso(now),
                            post.guid in baseline,
                        ),
                    )
                else:
                    published = min(row["published"], _iso(post.published))
                    kept = post_to_doc(post) | {"guid": row["guid"], "published": published}
                    doc = json.dumps(kept, ensure_ascii=False)
                    if doc == row["doc"]:
                        continue
                    tx.execute(
                        "UPDATE posts SET url = ?, doc = ?, published = ? WHERE guid = ?",
                        (post.url, doc, published, row["guid"]),
                    )
                    # an edited post is analysed again (terms, links) before its next use
                    tx.execute("DELETE FROM post_terms WHERE guid = ?", (row["guid"],))
                    tx.execute("DELETE FROM post_links WHERE guid = ?", (row["guid"],))
        return new

    def unsent_posts(self, lang: str, now: datetime) -> list[Post]:
        """Published posts of `lang` that no started edition holds and that are not baseline."""
        placeholders = ",".join("?" * len(STARTED_STATES))
        rows = self.db.execute(
            f"""SELECT doc FROM posts WHERE lang = ? AND baseline = 0 AND published <= ?
                AND guid NOT IN (
                    SELECT ep.guid FROM edition_posts ep JOIN editions e ON e.id = ep.edition_id
                    WHERE e.state IN ({placeholders}))
                ORDER BY published DESC, guid""",
            (lang, _iso(now), *STARTED_STATES),
        ).fetchall()
        return [post_from_doc(json.loads(row["doc"])) for row in rows]

    def post(self, ref: str) -> Post | None:
        """The post whose guid or URL is `ref`."""
        row = self.db.execute(
            "SELECT doc FROM posts WHERE guid = ? OR (url = ? AND url != '') LIMIT 1", (ref, ref)
        ).fetchone()
        return post_from_doc(json.loads(row["doc"])) if row else None

    # Editions ------------------------------------------------------------------------------

    def save_draft(self, edition: Edition) -> None:
        """Store a draft edition (replacing a draft of the same id) and the posts it holds."""
        guids = {post.guid for story in edition.stories for post in story.posts.values()}
        with self.transaction() as tx:
            row = tx.execute("SELECT state FROM editions WHERE id = ?", (edition.id,)).fetchone()
            if row and row["state"] not in (EditionState.DRAFT, EditionState.PROOFED):
                raise ValueError(f"edition {edition.id} is {row['state']}, not a draft")
            tx.execute(
                """INSERT INTO editions (id, created_at, state, doc) VALUES (?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, state = excluded.state""",
                (
                    edition.id,
                    _iso(edition.created_at),
                    EditionState.DRAFT,
                    json.dumps(edition_to_doc(edition), ensure_ascii=False),
                ),
            )
            tx.execute("DELETE FROM edition_posts WHERE edition_id = ?", (edition.id,))
            tx.executemany(
                "INSERT INTO edition_posts (edition_id, guid) VALUES (?, ?)",
                [(edition.id, guid) for guid in sorted(guids)],
            )

    def edition(self, edition_id: str) -> tuple[EditionState, Edition] | None:
        """An edition's state and content, or None when there is no such edition."""
        row = self.db.execute(
            "SELECT state, doc FROM editions WHERE id = ?", (edition_id,)
        ).fetchone()
        if row is None:
            return None
        return EditionState(row["state"]), edition_from_doc(json.loads(row["doc"]))

    def editions(self) -> list[tuple[str, EditionState]]:
        """(id, state) of every edition, newest first."""
        rows = self.db.execute("SELECT id, state FROM editions ORDER BY created_at DESC, id DESC")
        return [(row["id"], EditionState(row["state"])) for row in rows]

    def set_edition_state(self, edition_id: str, state: EditionState) -> None:
        """Move an edition along its lifecycle."""
        with self.transaction() as tx:
            tx.execute("UPDATE editions SET state = ? WHERE id = ?", (state, edition_id))

    def mark_proofed(self, edition_id: str) -> None:
        """A draft whose proof went out is `proofed` (a rebuild makes it a draft again)."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE editions SET state = ? WHERE id = ? AND state = ?",
                (EditionState.PROOFED, edition_id, EditionState.DRAFT),
            )

    def retry_failed(self, edition_id: str, langs: Sequence[str]) -> int:
        """Failed recipients of (edition, langs) back to pending; returns how many."""
        marks = ",".join("?" * len(langs))
        with self.transaction() as tx:
            cursor = tx.execute(
                f"UPDATE deliveries SET state = ? WHERE edition_id = ? AND state = ? "
                f"AND lang IN ({marks})",
                (DeliveryState.PENDING, edition_id, DeliveryState.FAILED, *langs),
            )
        return cursor.rowcount

    def record_run(
        self,
        run_id: str,
        command: str,
        started: datetime,
        outcome: str,
        exit_code: int,
        summary: dict[str, Any],
    ) -> None:
        """Remember how a run of `command` ended (`buzz status` shows the last ones)."""
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO runs (id, command, started_at, finished_at, outcome, "
                "exit_code, summary) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, command, _iso(started), _iso(datetime.now(UTC)), outcome, exit_code,
                 json.dumps(summary, ensure_ascii=False, default=str)),
            )  # fmt: skip

    def runs(self, most: int = 10, *, latest_of_each_command: bool = False) -> list[dict[str, Any]]:
        """The last runs, newest first (or the latest run of each command), with their
        summary (the counts of their `run_finished` event)."""
        where = (
            "WHERE r.rowid = (SELECT rowid FROM runs WHERE command = r.command "
            "ORDER BY finished_at DESC, rowid DESC LIMIT 1)"
            if latest_of_each_command
            else ""
        )
        rows = self.db.execute(
            "SELECT id, command, started_at, finished_at, outcome, exit_code, summary "
            f"FROM runs r {where} ORDER BY finished_at DESC, rowid DESC LIMIT ?",
            (most,),
        )
        return [dict(row) | {"summary": json.loads(row["summary"])} for row in rows]

    # Subscribers ---------------------------------------------------------------------------

    def upsert_subscribers(self, subscribers: Iterable[Subscriber], now: datetime) -> int:
        """Add or update subscribers; an unsubscribe is never undone by an import.

        Returns how many addresses were new.
        """
        added = 0
        with self.transaction() as tx:
            for sub in subscribers:
                existed = tx.execute(
                    "SELECT 1 FROM subscribers WHERE email = ?", (sub.email,)
                ).fetchone()
                added += existed is None
                tx.execute(
                    """INSERT INTO subscribers (email, lang, name, consent_source, consent_at,
                           unsubscribed_at, attributes, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (email) DO UPDATE SET
                           lang = excluded.lang, name = excluded.name,
                           consent_source = excluded.consent_source,
                           consent_at = excluded.consent_at,
                           unsubscribed_at = COALESCE(subscribers.unsubscribed_at,
                                                      excluded.unsubscribed_at),
                           attributes = excluded.attributes, updated_at = excluded.updated_at""",
                    (
                        sub.email,
                        sub.lang,
                        sub.name,
                        sub.consent_source,
                        sub.consent_at,
                        sub.unsubscribed_at,
                        sub.attributes,
                        _iso(now),
                    ),
                )
        return added

    def unsubscribe(self, email: str, now: datetime) -> bool:
        """Record an unsubscribe; False when the address is unknown."""
        with self.transaction() as tx:
            cursor = tx.execute(
                "UPDATE subscribers SET unsubscribed_at = COALESCE(unsubscribed_at, ?), "
                "updated_at = ? WHERE email = ?",
                (_iso(now), _iso(now), email),
            )
        return cursor.rowcount > 0

    def subscribers(self, lang: str | None = None) -> list[Subscriber]:
        """Every local subscriber (unsubscribed included), optionally of one language."""
        rows = self.db.execute(
            "SELECT email, lang, consent_source, consent_at, name, unsubscribed_at, attributes "
            "FROM subscribers WHERE ? IS NULL OR lang = ? ORDER BY lang, email",
            (lang, lang),
        ).fetchall()
        return [Subscriber(**dict(row)) for row in rows]

    def subscriber(self, email: str) -> Subscriber | None:
        """One subscriber by address (case-insensitive), or None."""
        with self.lock:
            row = self.db.execute(
                "SELECT email, lang, consent_source, consent_at, name, unsubscribed_at, "
                "attributes FROM subscribers WHERE email = ?",
                (email,),
            ).fetchone()
        return Subscriber(**dict(row)) if row else None

    def active_subscribers(self, lang: str) -> Iterator[Recipient]:
        """Subscribed addresses of `lang`, streamed (an audience of any size costs nothing)."""
        rows = self.db.execute(
            "SELECT email, lang, name FROM subscribers WHERE lang = ? AND unsubscribed_at IS NULL "
            "ORDER BY email",
            (lang,),
        )
        for row in rows:
            yield Recipient(email=row["email"], lang=row["lang"], name=row["name"])

    # The delivery ledger -------------------------------------------------------------------

    def freeze_audience(self, edition_id: str, lang: str, recipients: Iterable[Recipient]) -> int:
        """Write the ledger of (edition, lang) once — even an empty one; later calls change
        nothing. Returns the rows added."""
        with self.transaction() as tx:
            exists = tx.execute(
                "SELECT 1 FROM sends WHERE edition_id = ? AND lang = ?", (edition_id, lang)
            ).fetchone()
            if exists:
                return 0
            now = _iso(datetime.now(UTC))
            cursor = tx.executemany(
                "INSERT OR IGNORE INTO deliveries (edition_id, email, lang, name, state, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (edition_id, r.email, lang, r.name, DeliveryState.PENDING, now)
                    for r in recipients
                ],
            )
            tx.execute(
                "INSERT INTO sends (edition_id, lang, frozen_at, recipients) VALUES (?, ?, ?, ?)",
                (edition_id, lang, now, max(cursor.rowcount, 0)),
            )
            return max(cursor.rowcount, 0)

    def mark_interrupted(self, edition_id: str, lang: str) -> int:
        """Rows left `sending` by a dead process become `in_doubt`; returns how many."""
        with self.transaction() as tx:
            cursor = tx.execute(
                "UPDATE deliveries SET state = ?, updated_at = ? "
                "WHERE edition_id = ? AND lang = ? AND state = ?",
                (
                    DeliveryState.IN_DOUBT,
                    _iso(datetime.now(UTC)),
                    edition_id,
                    lang,
                    DeliveryState.SENDING,
                ),
            )
        return cursor.rowcount

    def iter_deliveries(
        self, edition_id: str, lang: str, states: Sequence[DeliveryState], page: int = 500
    ) -> Iterator[Recipient]:
        """Recipients of (edition, lang) whose ledger row is in one of `states`, by address,
        read a page at a time (rows may change state meanwhile: each is seen once)."""
        placeholders = ",".join("?" * len(states))
        after = ""
        while True:
            with self.lock:
                rows = self.db.execute(
                    f"SELECT email, lang, name FROM deliveries WHERE edition_id = ? AND lang = ? "
                    f"AND state IN ({placeholders}) AND email > ? ORDER BY email LIMIT ?",
                    (edition_id, lang, *states, after, page),
                ).fetchall()
            for row in rows:
                yield Recipient(email=row["email"], lang=row["lang"], name=row["name"])
            if len(rows) < page:
                return
            after = rows[-1]["email"]

    def count_deliveries(self, edition_id: str, lang: str, states: Sequence[DeliveryState]) -> int:
        """How many ledger rows of (edition, lang) are in one of `states`."""
        placeholders = ",".join("?" * len(states))
        row = self.db.execute(
            f"SELECT count(*) FROM deliveries WHERE edition_id = ? AND lang = ? "
            f"AND state IN ({placeholders})",
            (edition_id, lang, *states),
        ).fetchone()
        return int(row[0])

    def mark(
        self,
        edition_id: str,
        recipient: Recipient,
        state: DeliveryState,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Move one ledger row to `state` (committed before this returns)."""
        attempt = 1 if state is DeliveryState.SENDING else 0
        with self.transaction() as tx:
            tx.execute(
                "UPDATE deliveries SET state = ?, attempts = attempts + ?, "
                "message_id = COALESCE(?, message_id), last_error = COALESCE(?, last_error), "
                "updated_at = ? WHERE edition_id = ? AND lang = ? AND email = ?",
                (
                    state,
                    attempt,
                    message_id,
                    error,
                    _iso(datetime.now(UTC)),
                    edition_id,
                    recipient.lang,
                    recipient.email,
                ),
            )

    def delivery_counts(self, edition_id: str) -> dict[str, dict[str, int]]:
        """Per language whose ledger is frozen, how many rows are in each state (every state
        present, zeros included)."""
        counts: dict[str, dict[str, int]] = {
            row["lang"]: {state.value: 0 for state in DeliveryState}
            for row in self.db.execute(
                "SELECT lang FROM sends WHERE edition_id = ? ORDER BY lang", (edition_id,)
            )
        }
        rows = self.db.execute(
            "SELECT lang, state, count(*) AS n FROM deliveries WHERE edition_id = ? "
            "GROUP BY lang, state",
            (edition_id,),
        )
        for row in rows:
            per_lang = counts.setdefault(row["lang"], {state.value: 0 for state in DeliveryState})
            per_lang[row["state"]] = row["n"]
        return counts


@contextmanager
def locked(state_path: Path) -> Iterator[None]:
    """Hold the state store's lock; raise LockedError at once if another process has it.

    An OS-level lock (flock): it dies with its process, so a crashed run never leaves it behind.
    """
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another buzz process holds {lock_path}; try again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def is_locked(state_path: Path) -> bool:
    """Whether some process holds the state store's lock right now (asking creates no file)."""
    if not state_path.with_name(state_path.name + ".lock").exists():
        return False
    try:
        with locked(state_path):
            return False
    except LockedError:
        return True

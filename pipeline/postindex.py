"""What buzz has learned about the archive, persisted beside it in the state store: each post's
analysed terms and internal links (for related articles), translation pairs, marketing's
pairing decisions, and the `hreflang` alternates of post pages.

Terms are stored once per post as arrays of term ids and term-frequency weights (1 + ln tf),
so a run loads the whole archive's vectors in one query, ready for TF-IDF, without analysing a
single post again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from pipeline.models import PairEvidence, Pairing, Post
from pipeline.pairing import Overrides, Pair
from pipeline.store import Store, post_from_doc

TERM_ID = np.dtype("<i4")
TERM_WEIGHT = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class Analysis:
    """One post's analysed form: term counts and the posts it links to (canonical URLs)."""

    terms: Mapping[str, int]
    links: frozenset[str]


@dataclass(frozen=True, slots=True)
class TermMatrix:
    """The analysed archive of one language, as a sparse matrix in CSR parts."""

    guids: list[str]
    published: npt.NDArray[np.float64]  # POSIX seconds
    indptr: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int32]
    tf_weights: npt.NDArray[np.float32]  # 1 + ln(term count): sublinear term frequency


class Translations(Mapping[str, str]):
    """guid → the guid of its translation, read from the store as asked (and remembered),
    with how sure pairing was and why (`pairing`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.known: dict[str, tuple[str, Pairing] | None] = {}

    def _row(self, guid: str) -> tuple[str, Pairing] | None:
        if guid not in self.known:
            row = self.db.execute(
                "SELECT partner, confidence, evidence FROM translations WHERE guid = ?", (guid,)
            ).fetchone()
            evidence = (
                PairEvidence.from_brief(json.loads(row[2]))
                if row and row[2]
                else PairEvidence(basis="unrecorded")
            )
            self.known[guid] = (row[0], Pairing(row[1], evidence)) if row else None
        return self.known[guid]

    def __getitem__(self, guid: str) -> str:
        found = self._row(guid)
        if found is None:
            raise KeyError(guid)
        return found[0]

    def pairing(self, guid: str) -> Pairing | None:
        """How `guid` was paired with its translation (None: it has none)."""
        found = self._row(guid)
        return found[1] if found else None

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self.db.execute("SELECT guid FROM translations"))

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM translations").fetchone()[0])


class PostIndex:
    """Reads and writes the analysed archive through a `Store`'s connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # Terms and links -------------------------------------------------------------------------

    def unanalysed(self) -> list[Post]:
        """Posts whose terms are not stored yet (new, or edited since)."""
        rows = self.db.execute(
            "SELECT p.doc FROM posts p LEFT JOIN post_terms t ON t.guid = p.guid "
            "WHERE t.guid IS NULL ORDER BY p.rowid"
        )
        return [post_from_doc(json.loads(row["doc"])) for row in rows]

    def save_analyses(self, analysed: Iterable[tuple[Post, Analysis]]) -> int:
        """Store each post's terms (creating term ids as needed) and links; returns how many."""
        count = 0
        vocabularies: dict[str, dict[str, int]] = {}
        with self.store.transaction() as tx:
            for post, analysis in analysed:
                if post.lang not in vocabularies:
                    vocabularies[post.lang] = self._vocabulary(post.lang)
                known = vocabularies[post.lang]
                for term in analysis.terms:
                    if term not in known:
                        cursor = tx.execute(
                            "INSERT INTO terms (lang, term) VALUES (?, ?)", (post.lang, term)
                        )
                        known[term] = int(cursor.lastrowid or 0)
                ids = np.fromiter((known[t] for t in analysis.terms), dtype=TERM_ID)
                counts = np.fromiter(analysis.terms.values(), dtype=TERM_WEIGHT)
                tf_weights = 1.0 + np.log(counts, dtype=TERM_WEIGHT)
                order = np.argsort(ids)
                tx.execute(
                    "INSERT OR REPLACE INTO post_terms (guid, lang, ids, weights) "
                    "VALUES (?, ?, ?, ?)",
                    (post.guid, post.lang, ids[order].tobytes(), tf_weights[order].tobytes()),
                )
                tx.execute("DELETE FROM post_links WHERE guid = ?", (post.guid,))
                tx.executemany(
                    "INSERT INTO post_links (guid, target) VALUES (?, ?)",
                    [(post.guid, target) for target in sorted(analysis.links)],
                )
                count += 1
        return count

    def _vocabulary(self, lang: str) -> dict[str, int]:
        rows = self.db.execute("SELECT term, id FROM terms WHERE lang = ?", (lang,))
        return {row["term"]: row["id"] for row in rows}

    def term_matrix(self, lang: str, now: datetime) -> TermMatrix:
        """Every published, analysed post of `lang` that has a link, in one sparse matrix (a
        post without one cannot be a related pick)."""
        where = "FROM post_terms t JOIN posts p ON p.guid = t.guid "
        where += "WHERE t.lang = ? AND p.published <= ? AND p.url != ''"
        bounds = (lang, now.astimezone(UTC).isoformat())
        size, total = self.db.execute(
            f"SELECT count(*), coalesce(sum(length(t.weights)), 0) {where}", bounds
        ).fetchone()
        total //= TERM_WEIGHT.itemsize
        ids = np.empty(total, dtype=TERM_ID)  # filled in place: one copy of the data, no more
        tf_weights = np.empty(total, dtype=TERM_WEIGHT)
        indptr = np.zeros(size + 1, dtype=np.int64)
        published = np.empty(size, dtype=np.float64)
        guids: list[str] = []
        rows = self.db.execute(
            f"SELECT t.guid, CAST(strftime('%s', p.published) AS REAL), t.ids, t.weights {where} "
            "ORDER BY p.rowid",
            bounds,
        )
        end = 0
        for n, (guid, seconds, post_ids, post_weights) in enumerate(rows):
            start, end = end, end + len(post_weights) // TERM_WEIGHT.itemsize
            ids[start:end] = np.frombuffer(post_ids, dtype=TERM_ID)
            tf_weights[start:end] = np.frombuffer(post_weights, dtype=TERM_WEIGHT)
            indptr[n + 1] = end
            published[n] = seconds
            guids.append(guid)
        return TermMatrix(guids, published, indptr, ids, tf_weights)

    def term_names(self, ids: Iterable[int]) -> dict[int, str]:
        """The terms behind term ids."""
        wanted = sorted(set(ids))
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(f"SELECT id, term FROM terms WHERE id IN ({marks})", wanted)
        return {row["id"]: row["term"] for row in rows}

    def linked_with(self, post: Post) -> set[str]:
        """Guids of the posts that `post` links to, or that link to it."""
        rows = self.db.execute(
            "SELECT p.guid FROM post_links l JOIN posts p ON p.url = l.target WHERE l.guid = ? "
            "UNION SELECT l.guid FROM post_links l WHERE l.target = ?",
            (post.guid, post.url),
        )
        return {row[0] for row in rows}

    def posts(self, guids: Iterable[str]) -> dict[str, Post]:
        """Posts by guid."""
        wanted = list(guids)
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(f"SELECT doc FROM posts WHERE guid IN ({marks})", wanted)
        return {post.guid: post for post in (post_from_doc(json.loads(r["doc"])) for r in rows)}

    # Translations ----------------------------------------------------------------------------

    def translations(self) -> Translations:
        """Every known translation, both ways: guid → its translation's guid (read on demand)."""
        return Translations(self.db)

    def posts_to_pair(self, lang: str, since: datetime) -> list[Post]:
        """Posts of `lang` without a translation that pairing has not looked at yet, or that
        are recent enough for their translation still to appear."""
        rows = self.db.execute(
            "SELECT doc FROM posts p WHERE lang = ? AND NOT EXISTS "
            "(SELECT 1 FROM translations t WHERE t.guid = p.guid) "
            "AND (pair_checked = 0 OR published >= ?) ORDER BY published",
            (lang, since.astimezone(UTC).isoformat()),
        )
        return [post_from_doc(json.loads(row["doc"])) for row in rows]

    def save_pairs(self, pairs: Iterable[Pair], checked: Iterable[Post], source: str) -> None:
        """Record translation pairs (both ways) and mark the posts that pairing examined."""
        with self.store.transaction() as tx:
            for p in pairs:
                evidence = json.dumps(p.evidence.brief(), ensure_ascii=False)
                for a, b in ((p.first, p.second), (p.second, p.first)):
                    tx.execute(
                        "INSERT OR REPLACE INTO translations "
                        "(guid, partner, confidence, source, evidence) VALUES (?, ?, ?, ?, ?)",
                        (a.guid, b.guid, p.confidence, source, evidence),
                    )
            tx.executemany(
                "UPDATE posts SET pair_checked = 1 WHERE guid = ?",
                [(post.guid,) for post in checked],
            )

    def decide(self, a: Post, b: Post, kind: str, now: datetime) -> None:
        """Marketing forces (`force`) or forbids (`break`) the pair (a, b); any automatic pair
        of either post that contradicts it is forgotten, to be made again."""
        with self.store.transaction() as tx:
            tx.execute(
                "DELETE FROM pair_overrides WHERE (a = ? AND b = ?) OR (a = ? AND b = ?)",
                (a.guid, b.guid, b.guid, a.guid),
            )
            if kind == "force":  # a post has one translation: older forced pairs of either go
                tx.execute(
                    "DELETE FROM pair_overrides WHERE kind = 'force' AND "
                    "(a IN (?, ?) OR b IN (?, ?))",
                    (a.guid, b.guid, a.guid, b.guid),
                )
            tx.execute(
                "INSERT INTO pair_overrides (a, b, kind, decided_at) VALUES (?, ?, ?, ?)",
                (a.guid, b.guid, kind, now.astimezone(UTC).isoformat()),
            )
            for guid in (a.guid, b.guid):
                partner = tx.execute(
                    "SELECT partner FROM translations WHERE guid = ?", (guid,)
                ).fetchone()
                if partner is not None:
                    tx.execute("DELETE FROM translations WHERE guid IN (?, ?)", (guid, partner[0]))
                tx.execute("UPDATE posts SET pair_checked = 0 WHERE guid = ?", (guid,))

    def overrides(self) -> Overrides:
        """Every pairing decision marketing made."""
        rows = self.db.execute("SELECT a, b, kind FROM pair_overrides").fetchall()
        return Overrides(
            forced=frozenset((r["a"], r["b"]) for r in rows if r["kind"] == "force"),
            broken=frozenset((r["a"], r["b"]) for r in rows if r["kind"] == "break"),
        )

    # Page alternates -------------------------------------------------------------------------

    def alternates(self, urls: Iterable[str]) -> dict[str, dict[str, str] | None]:
        """The cached `hreflang` alternates of post pages fetched before (None: none found)."""
        wanted = list(urls)
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(
            f"SELECT url, alternates FROM page_alternates WHERE url IN ({marks}) AND error IS NULL",
            wanted,
        )
        return {r["url"]: json.loads(r["alternates"]) if r["alternates"] else None for r in rows}

    def save_alternates(
        self, url: str, found: Mapping[str, str] | None, error: str | None, now: datetime
    ) -> None:
        """Cache what a post page declared (or why it could not be read)."""
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO page_alternates (url, fetched_at, alternates, error) "
                "VALUES (?, ?, ?, ?)",
                (url, now.astimezone(UTC).isoformat(), json.dumps(found) if found else None, error),
            )

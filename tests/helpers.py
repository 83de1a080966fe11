"""Helpers shared by the tests: paths and a Post factory for the pure stages."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from pipeline.models import Post
from pipeline.store import Store, post_from_doc

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def make_post(
    guid: str,
    lang: str = "en",
    title: str = "A post",
    *,
    summary: str = "",
    published: datetime | None = None,
    categories: tuple[str, ...] = (),
    image: str | None = None,
    author: str = "",
    content_html: str = "",
) -> Post:
    """A Post with sensible defaults, for tests of the pure stages."""
    return Post(
        guid=guid,
        lang=lang,
        url=f"https://blog.example.com/{lang}/{guid}/",
        title=title,
        summary=summary or title,
        published=published or datetime(2026, 11, 20, 14, 0, tzinfo=UTC),
        content_html=content_html,
        image=image,
        categories=categories,
        author=author,
    )


@contextmanager
def lock_held_by_another_process(state: Path) -> Iterator[None]:
    """A separate process holds the state store's lock for the duration of the block, and is
    killed (not allowed to release it) at the end."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from pipeline.store import locked\n"
            f"with locked(Path({str(state)!r})):\n print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def archive(store: Store, lang: str) -> list[Post]:
    """Every post of `lang` in the store, newest first (what a test looks at)."""
    rows = store.db.execute(
        "SELECT doc FROM posts WHERE lang = ? ORDER BY published DESC, guid", (lang,)
    )
    return [post_from_doc(json.loads(row["doc"])) for row in rows]


def ses_environment(endpoint: str) -> dict[str, str]:
    """The environment of a `buzz` process sending through a local SES endpoint."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_SESV2": endpoint,
        "BUZZ_UNSUBSCRIBE_SECRET": "test-secret",
    }


def eval_set() -> tuple[list[dict[str, Any]], dict[str, Post]]:
    """The labelled evaluation set of tests/data/eval: its raw items (labels included) and
    their posts by id (what buzz sees: no label)."""
    raw = json.loads((DATA / "eval" / "posts.json").read_text(encoding="utf-8"))["posts"]
    posts = {item["id"]: post_from_doc(item | {"feed_url": ""}) for item in raw}
    return raw, posts


def add_feed_item(feed: Path, guid: str, title: str, published: datetime) -> None:
    """Put a new entry at the top of a demo RSS feed (a post the blog just published)."""
    text = feed.read_text(encoding="utf-8")
    item = (
        f"<item><title>{title}</title><link>https://blog.example.com/new/{guid}/</link>"
        f"<pubDate>{format_datetime(published)}</pubDate>"
        f'<guid isPermaLink="false">https://blog.example.com/?p={guid}</guid>'
        f"<description>{title}, and why it matters this week.</description></item>\n"
    )
    at = text.index("<item>")
    feed.write_text(text[:at] + item + text[at:], encoding="utf-8")


def snapshot(state: Path, folder: Path) -> tuple[list[str], dict[str, tuple[bytes, int]]]:
    """Everything a command could change: a full SQL dump of the state store, and every file
    under `folder` (path → bytes and modification time). SQLite's own -wal/-shm files and the
    lock file are left out: they are the database engine's and the lock's, not the state."""
    dump: list[str] = []
    if state.exists():
        db = sqlite3.connect(state)
        try:
            dump = list(db.iterdump())
        finally:
            db.close()
    engine = {state.name + suffix for suffix in ("-wal", "-shm", ".lock")}
    files = {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not (path.parent == state.parent and path.name in engine)
    }
    return dump, files


def built_draft(buzz: Callable[..., subprocess.CompletedProcess[str]], demo: Path) -> Path:
    """Import the demo audience, fetch and build the demo's edition; its draft.toml."""
    for command in (("subscribers", "import", "demo/subscribers.csv"), ("fetch",), ("build",)):
        result = buzz(*command)
        assert result.returncode == 0, result.stderr
    [folder] = (demo / "var" / "out" / "editions").iterdir()
    return folder / "draft.toml"

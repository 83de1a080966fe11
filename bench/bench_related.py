"""Benchmark of related-article selection (issue 4) on large archives.

`python bench/bench_related.py [POSTS_PER_LANGUAGE ...]` (default: 10000 100000). For each size,
a synthetic bilingual archive is built once in a temporary state store through the real code
(save_posts, analysis, translation pairs); then a fresh process runs what `buzz build` runs for a
10-story edition — load the analysed archive, build both languages' indexes, pick and explain
the related posts of every story — and reports its wall time and peak memory.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peak import peak_rss
from pipeline.config import load
from pipeline.curate import Curator
from pipeline.models import Post, Story
from pipeline.pairing import Pair
from pipeline.postindex import PostIndex
from pipeline.related import analyze
from pipeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, tzinfo=UTC)
STORIES = 10


def _vocabulary(lang: str) -> list[str]:
    """Real words of the demo's posts in `lang` (a few thousand)."""
    feed = "it-buzz-en.xml" if lang == "en" else "le-buzz-it-fr.xml"
    text = (ROOT / "demo" / "feeds" / feed).read_text(encoding="utf-8").lower()
    return sorted({w for w in text.replace("<", " ").replace(">", " ").split() if w.isalpha()})


def _posts(count: int, lang: str, rng: random.Random) -> list[Post]:
    """`count` posts of ~300 words: 40 topics, each with its own favourite words."""
    words = _vocabulary(lang)
    topics = [rng.sample(words, 60) for _ in range(40)]
    start = NOW - timedelta(days=3650)
    posts = []
    for n in range(count):
        topic = n % len(topics)
        body = " ".join(
            rng.choice(topics[topic]) if rng.random() < 0.35 else rng.choice(words)
            for _ in range(300)
        )
        posts.append(
            Post(
                guid=f"https://blog.example.com/?p={lang}{n}",
                lang=lang,
                url=f"https://blog.example.com/{lang}/{n}/",
                title=" ".join(rng.choice(topics[topic]) for _ in range(8)),
                summary=body[:200],
                published=start + timedelta(days=3650 * n / count),
                content_html=f"<p>{body}</p>",
                categories=("IT Buzz", f"topic-{topic}"),
            )
        )
    return posts


def build_archive(state: Path, count: int) -> dict[str, float]:
    """Fill a state store with `count` posts per language, analysed and paired."""
    rng = random.Random(count)
    store = Store(state)
    english, french = _posts(count, "en", rng), _posts(count, "fr", rng)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for posts in (english, french):
        for chunk in range(0, len(posts), 5000):
            store.save_posts(posts[chunk : chunk + 5000], set(), NOW)
    timings["store_s"] = time.perf_counter() - started
    index = PostIndex(store)
    started = time.perf_counter()
    index.save_analyses((post, analyze(post)) for post in index.unanalysed())
    timings["analyse_s"] = time.perf_counter() - started
    pairs = [Pair(a, b, 1.0) for a, b in zip(english, french, strict=True)]
    index.save_pairs(pairs, checked=[*english, *french], source="bench")
    store.close()
    return timings


def measure(state: Path) -> None:
    """In a fresh process: the related stage of a 10-story edition, timed; print JSON."""
    settings = load(ROOT / "buzz.toml")
    started = time.perf_counter()
    store = Store(state)
    index = PostIndex(store)
    newest = store.db.execute(
        "SELECT guid FROM posts WHERE lang = 'en' ORDER BY published DESC LIMIT ?", (STORIES,)
    ).fetchall()
    english = index.posts(row[0] for row in newest)
    translations = index.translations()
    french = index.posts(translations[guid] for guid in english)
    curator = Curator(settings, index)
    curator.prepare({"en": list(english.values()), "fr": list(french.values())}, NOW)
    keep_out = frozenset([*english, *french])
    picks = [
        curator.related(Story({"en": post, "fr": french[translations[guid]]}), keep_out)
        for guid, post in english.items()
    ]
    elapsed = time.perf_counter() - started
    peak = peak_rss()
    chosen = sum(len(lang_picks) for story in picks for lang_picks in story.values())
    print(json.dumps({"seconds": elapsed, "peak_bytes": peak, "picks": chosen}))


def main(sizes: list[int]) -> None:
    print(f"Related benchmark — {datetime.now(UTC):%Y-%m-%d}, Python {sys.version.split()[0]}\n")
    print(
        "| posts per language | build once: store / analyse | 10-story related stage "
        "| peak memory | picks |"
    )
    print("| --- | --- | --- | --- | --- |")
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            state = Path(folder) / "state.sqlite"
            timings = build_archive(state, size)
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(state)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.splitlines()[-1])
        memory = result["peak_bytes"] / 1e6
        print(
            f"| {size:,} | {timings['store_s']:.0f} s / {timings['analyse_s']:.0f} s "
            f"| {result['seconds']:.2f} s | {memory:.0f} MB | {result['picks']} |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        measure(Path(sys.argv[2]))
    else:
        main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000])

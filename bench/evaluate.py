"""Pairing accuracy (with the pages' hreflang and without) and related-article precision on the
labelled set in tests/data/eval.

`python bench/evaluate.py [--json]`. The posts go through the real code: a temporary state
store, the analysis, the `hreflang` alternates as a page fetch would have cached them, the
Curator's pairing and its related picks for every story (both languages, mirrored). The labels
(`cluster`, `translation_of`) are only used to score the result.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.helpers

from pipeline.config import load  # noqa: E402
from pipeline.curate import Curator  # noqa: E402
from pipeline.models import Post, Story  # noqa: E402
from pipeline.pairing import MIN_CONFIDENCE  # noqa: E402
from pipeline.postindex import PostIndex  # noqa: E402
from pipeline.store import Store  # noqa: E402
from tests.helpers import eval_set  # noqa: E402

DATA = ROOT / "tests" / "data" / "eval" / "posts.json"
NOW = datetime(2026, 11, 26, tzinfo=UTC)
Raw = list[dict[str, Any]]


def evaluate() -> dict[str, Any]:
    """Run pairing (with the pages' hreflang, and again without) and related selection on the
    set; return the scores."""
    raw, posts = eval_set()
    with tempfile.TemporaryDirectory() as folder:
        without_hreflang, _ = _pair(Path(folder) / "without.sqlite", raw, posts, hreflang=False)
        with_hreflang, curator = _pair(Path(folder) / "with.sqlite", raw, posts, hreflang=True)
        related = _related(curator, raw, posts)
    return {
        "pairing": with_hreflang,
        "pairing_without_hreflang": without_hreflang,
        "threshold": MIN_CONFIDENCE,
        **related,
    }


def _pair(
    path: Path, raw: Raw, posts: dict[str, Post], hreflang: bool
) -> tuple[dict[str, Any], Curator]:
    """Pair the whole set through a fresh store, as a run would; score the pairs found."""
    label = {posts[item["id"]].guid: item for item in raw}
    truth = {
        frozenset((posts[item["id"]].guid, posts[item["translation_of"]].guid))
        for item in raw
        if item["translation_of"]
    }
    store = Store(path)
    store.save_posts(posts.values(), set(), NOW)
    index = PostIndex(store)
    for item in raw:
        index.save_alternates(item["url"], item["hreflang"] if hreflang else None, None, NOW)
    curator = Curator(load(ROOT / "buzz.toml"), index)
    curator.prepare({}, NOW)
    found = {frozenset((row["guid"], row["partner"])) for row in store.db.execute(
        "SELECT guid, partner FROM translations")}  # fmt: skip
    correct = len(truth & found)
    return {
        "pairs_expected": len(truth),
        "pairs_found": len(found),
        "pairs_correct": correct,
        "accuracy": correct / len(truth),
        "wrong_pairs": sorted(sorted(label[g]["id"] for g in pair) for pair in found - truth),
        "adversarial_couples": _adversarial(raw, posts, truth),
    }, curator


def _adversarial(raw: Raw, posts: dict[str, Post], truth: set[frozenset[str]]) -> int:
    """English/French couples that are not translations but share the author, the image file
    and a publication day (two days at most): what pairing must not be fooled by."""
    english = [posts[item["id"]] for item in raw if item["lang"] == "en"]
    french = [posts[item["id"]] for item in raw if item["lang"] == "fr"]
    return sum(
        1
        for a in english
        for b in french
        if frozenset((a.guid, b.guid)) not in truth
        and a.author == b.author
        and a.image == b.image
        and abs(a.published - b.published) <= timedelta(days=2)
    )


def _related(curator: Curator, raw: Raw, posts: dict[str, Post]) -> dict[str, Any]:
    """The related picks of every story of the set (a translated post's story has both
    languages, mirrored), scored against the topic clusters."""
    label = {posts[item["id"]].guid: item for item in raw}
    translation = {item["translation_of"]: item["id"] for item in raw if item["translation_of"]}
    truth = {frozenset((posts[a].guid, posts[b].guid)) for a, b in translation.items()}
    picks = Counter[str]()
    for item in raw:
        if item["cluster"].startswith("distractor") or item["translation_of"]:
            continue
        story = {item["lang"]: posts[item["id"]]}
        if item["id"] in translation:
            story["fr"] = posts[translation[item["id"]]]
        for lang, chosen in curator.related(Story(story), frozenset()).items():
            for rel in chosen:
                picks["picks"] += 1
                picks["in_cluster"] += label[rel.post.guid]["cluster"] == item["cluster"]
                picks["self"] += rel.post.guid == story[lang].guid
                picks["translation"] += frozenset((rel.post.guid, story[lang].guid)) in truth
                picks["other_language"] += rel.post.lang != lang
            picks["lists"] += 1
    return {
        "related_lists": picks["lists"],
        "related_picks": picks["picks"],
        "related_precision_at_3": picks["in_cluster"] / max(picks["picks"], 1),
        "picks_per_list": picks["picks"] / max(picks["lists"], 1),
        "self_picks": picks["self"],
        "translation_picks": picks["translation"],
        "other_language_picks": picks["other_language"],
    }


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    scores = evaluate()
    if "--json" in sys.argv:
        print(json.dumps(scores))
        return
    print(f"Evaluation on {DATA.relative_to(ROOT)} — {datetime.now(UTC):%Y-%m-%d}\n")
    print("| measure | target | result |")
    print("| --- | --- | --- |")
    for mode, key in (
        ("with hreflang", "pairing"),
        ("without hreflang", "pairing_without_hreflang"),
    ):
        found = scores[key]
        print(f"| pairing accuracy, {mode} ({found['pairs_correct']}/{found['pairs_expected']} "
              f"pairs) | ≥ 95 % | {found['accuracy']:.1%} |")  # fmt: skip
        print(f"| wrong pairs above the confidence threshold ({scores['threshold']}), {mode} "
              f"| 0 | {len(found['wrong_pairs'])} {found['wrong_pairs'] or ''} |")  # fmt: skip
    print(f"| couples of different posts with one author, one image file and one day "
          f"| — | {scores['pairing']['adversarial_couples']} |")  # fmt: skip
    precision = scores["related_precision_at_3"]
    print(f"| related precision@3 ({scores['related_picks']} picks over "
          f"{scores['related_lists']} lists) | ≥ 0.8 | {precision:.2f} |")  # fmt: skip
    print(f"| related posts per list | — | {scores['picks_per_list']:.2f} |")
    print(f"| picks that are the post itself / its translation / another language | 0 / 0 / 0 "
          f"| {scores['self_picks']} / {scores['translation_picks']} / "
          f"{scores['other_language_picks']} |")  # fmt: skip


if __name__ == "__main__":
    main()

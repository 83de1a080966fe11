"""Pairing accuracy and related-article precision on the labelled set in tests/data/eval.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.helpers

from pipeline.config import load  # noqa: E402
from pipeline.curate import Curator  # noqa: E402
from pipeline.models import Story  # noqa: E402
from pipeline.pairing import MIN_CONFIDENCE  # noqa: E402
from pipeline.postindex import PostIndex  # noqa: E402
from pipeline.store import Store  # noqa: E402
from tests.helpers import eval_set  # noqa: E402

DATA = ROOT / "tests" / "data" / "eval" / "posts.json"
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def evaluate() -> dict[str, Any]:
    """Run pairing and related selection on the set; return the scores."""
    raw, posts = eval_set()
    label = {posts[item["id"]].guid: item for item in raw}
    truth = {
        frozenset((posts[item["id"]].guid, posts[item["translation_of"]].guid))
        for item in raw
        if item["translation_of"]
    }
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "state.sqlite")
        store.save_posts(posts.values(), set(), NOW)
        index = PostIndex(store)
        for item in raw:
            index.save_alternates(item["url"], item["hreflang"], None, NOW)
        curator = Curator(load(ROOT / "buzz.toml"), index)
        curator.prepare({}, NOW)
        found = {
            frozenset((row["guid"], row["partner"])): row["confidence"]
            for row in store.db.execute("SELECT * FROM translations")
        }
        picks = Counter[str]()
        for item in raw:
            if item["lang"] != "en" or item["cluster"].startswith("distractor"):
                continue
            english = posts[item["id"]]
            french = next(posts[x["id"]] for x in raw if x["translation_of"] == item["id"])
            related = curator.related(Story({"en": english, "fr": french}), frozenset())
            for lang, chosen in related.items():
                story = english if lang == "en" else french
                for rel in chosen:
                    picks["picks"] += 1
                    picks["in_cluster"] += label[rel.post.guid]["cluster"] == item["cluster"]
                    picks["self"] += rel.post.guid == story.guid
                    picks["translation"] += frozenset((rel.post.guid, story.guid)) in truth
                    picks["other_language"] += rel.post.lang != lang
                picks["lists"] += 1
    correct = len(truth & set(found))
    return {
        "pairs_expected": len(truth),
        "pairs_found": len(found),
        "pairs_correct": correct,
        "pairing_accuracy": correct / len(truth),
        "wrong_pairs": [sorted(label[g]["id"] for g in pair) for pair in set(found) - truth],
        "threshold": MIN_CONFIDENCE,
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
    print(f"| pairing accuracy ({scores['pairs_correct']}/{scores['pairs_expected']} pairs) "
          f"| ≥ 95 % | {scores['pairing_accuracy']:.1%} |")  # fmt: skip
    print(f"| wrong pairs above the confidence threshold ({scores['threshold']}) | 0 "
          f"| {len(scores['wrong_pairs'])} {scores['wrong_pairs'] or ''} |")  # fmt: skip
    precision = scores["related_precision_at_3"]
    print(f"| related precision@3 ({scores['related_picks']} picks over "
          f"{scores['related_lists']} lists) | ≥ 0.8 | {precision:.2f} |")  # fmt: skip
    print(f"| related posts per list | — | {scores['picks_per_list']:.2f} |")
    print(f"| picks that are the post itself / its translation / another language | 0 / 0 / 0 "
          f"| {scores['self_picks']} / {scores['translation_picks']} / "
          f"{scores['other_language_picks']} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""The labelled evaluation set (tests/data/eval) meets the targets of pairing and related."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def test_pairing_and_related_meet_their_targets_on_the_labelled_set() -> None:
    """≥ 95 % of pairs found and no wrong pair, with the pages' hreflang and without, among
    ≥ 8 couples of different posts sharing author, image and day; precision@3 ≥ 0.8, no self /
    translation / other-language pick — measured by bench/evaluate.py through the real
    pipeline."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "evaluate.py"), "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    scores = json.loads(out.stdout.splitlines()[-1])
    for mode in ("pairing", "pairing_without_hreflang"):
        assert scores[mode]["accuracy"] >= 0.95, mode
        assert scores[mode]["wrong_pairs"] == [], mode
    assert scores["pairing"]["adversarial_couples"] >= 8
    assert scores["related_precision_at_3"] >= 0.8
    assert scores["picks_per_list"] >= 1.5  # precision is not bought by showing nothing
    assert scores["self_picks"] == 0
    assert scores["translation_picks"] == 0
    assert scores["other_language_picks"] == 0

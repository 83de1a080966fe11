"""The labelled evaluation set (tests/data/eval) meets the targets of pairing and related."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def test_pairing_and_related_meet_their_targets_on_the_labelled_set() -> None:
    """≥ 95 % of pairs found, no wrong pair, precision@3 ≥ 0.8, no self / translation /
    other-language pick — measured by bench/evaluate.py through the real pipeline."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "evaluate.py"), "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    scores = json.loads(out.stdout.splitlines()[-1])
    assert scores["pairing_accuracy"] >= 0.95
    assert scores["wrong_pairs"] == []
    assert scores["related_precision_at_3"] >= 0.8
    assert scores["picks_per_list"] >= 1.5  # precision is not bought by showing nothing
    assert scores["self_picks"] == 0
    assert scores["translation_picks"] == 0
    assert scores["other_language_picks"] == 0

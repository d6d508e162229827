"""``bench/classify.py`` runs from a clone and prints the figures the closing notes quote (a small slice)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_each_rounds_rates_and_ratio_then_the_medians() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "classify.py"), "--n", "96", "--rounds", "3", "--batch", "32"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out = done.stdout
    raws = [float(x) for x in re.findall(r"raw encoder \(tokenise \+ forward \+ mean pool\):\s+([\d.]+) posts/s", out)]
    clfs = [float(x) for x in re.findall(r"classifier \(Classifier\.classify end to end\):\s+([\d.]+) posts/s", out)]
    ratios = [float(x) for x in re.findall(r"ratio classifier / raw encoder: ([\d.]+)", out)]
    assert len(raws) == len(clfs) == len(ratios) == 3, out
    assert all(r > 0 for r in raws + clfs)
    for raw, clf, ratio in zip(raws, clfs, ratios, strict=True):
        assert ratio == pytest.approx(clf / raw, abs=0.006)  # printed to two decimals
    median = re.search(
        r"median of 3 rounds: raw encoder ([\d.]+) posts/s, classifier ([\d.]+) posts/s, ratio ([\d.]+)", out
    )
    assert median, out
    assert float(median[1]) == pytest.approx(sorted(raws)[1], abs=0.06)
    assert float(median[2]) == pytest.approx(sorted(clfs)[1], abs=0.06)


def test_bench_refuses_zero_rounds() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "classify.py"), "--rounds", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--rounds must be at least 1" in done.stderr

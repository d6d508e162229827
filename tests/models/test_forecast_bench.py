"""``bench/forecast.py`` runs from a clone and prints the figures it is quoted for (a small slice here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "datasets" / "virality_cascades"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared cascades are not at {DATA}")
def test_bench_prints_error_coverage_and_auc_per_dataset_and_observation_time() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "forecast.py"),
            "--json",
            "--limit",
            "60",
            "--folds",
            "3",
            "--datasets",
            "large",
            "auspol",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = json.loads(done.stdout)
    assert set(results["datasets"]) == {"large", "auspol"}
    for entry in results["datasets"].values():
        assert entry["cascades"] == 60
        assert set(entry["by_minutes"]) == {"15", "30", "60"}
        for rows in entry["by_minutes"].values():
            assert {"seismic", "seismic+cal", "counts", "k*count", "followers", "best-const", "forecaster"} <= set(rows)
            for figures in rows.values():
                assert figures["mdare"] >= 0
                # the tie-free companions: the mean relative error, and the median over cascades that grew
                assert figures["mare"] >= 0
                assert figures["mdare_grew"] is None or figures["mdare_grew"] >= 0
                assert figures["interval_score"] >= 0
                assert 0 <= figures["coverage"] <= 1
                assert figures["auc"] is None or 0 <= figures["auc"] <= 1
    # the auspol outliers (a retweet about 7 years late) are outside the 7-day horizon, and counted
    assert results["datasets"]["auspol"]["events_beyond_horizon_dropped"] >= 1


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_forecast", ROOT / "bench" / "forecast.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_interval_score_charges_width_and_ten_times_each_unit_missed() -> None:
    interval_score = _bench_module().interval_score
    assert interval_score(10, 20, 15) == 10  # inside: the width alone
    assert interval_score(10, 20, 25) == pytest.approx(10 + 10 * 5)  # an 80% band pays 2 / 0.2 = 10 per unit missed
    assert interval_score(10, 20, 7) == pytest.approx(10 + 10 * 3)
    # a band that always holds the count but is twice as wide scores worse than a tight one that holds it
    assert interval_score(5, 25, 15) > interval_score(10, 20, 15)

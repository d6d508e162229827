"""``bench/forecast.py`` runs from a clone and prints the figures it is quoted for (a small slice here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
                assert 0 <= figures["coverage"] <= 1
                assert figures["auc"] is None or 0 <= figures["auc"] <= 1
    # the auspol outliers (a retweet about 7 years late) are outside the 7-day horizon, and counted
    assert results["datasets"]["auspol"]["events_beyond_horizon_dropped"] >= 1

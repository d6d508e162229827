"""``bench/index.py`` runs from a clone and prints the figures it is quoted for (300 posts here)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.elasticsearch
def test_bench_indexes_every_post_in_both_stores_and_times_the_queries(es_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/index.py"), "--posts", "300", "--runs", "3", "--json", "--es-url", es_url],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = json.loads(done.stdout)
    es, lite = results["elasticsearch"], results["sqlite"]
    assert (es["count"], lite["count"]) == (300, 300)
    for figures in (es["ours"], es["bare_bulk"], lite["ours"]):
        assert figures["docs"] == 300
        assert figures["docs_per_s"] > 0
    assert es["ratio"] > 0
    for latencies in (es["latency"], lite["latency"]):
        assert 0 < latencies["search"]["p50_ms"] <= latencies["search"]["p95_ms"]
        assert latencies["search"]["runs"] == 3
        assert latencies["search"]["matches"] > 0  # a query that finds nothing would time nothing
    assert es["latency"]["search"]["matches"] == lite["latency"]["search"]["matches"]
    # The bench cleans up after itself: no index of its prefix is left on the server.
    with urllib.request.urlopen(f"{es_url}/_cat/indices/{es['index_prefix']}-*?format=json", timeout=30) as answer:
        assert json.load(answer) == []

"""The virality forecaster on real retweet cascades: error, band coverage and AUC, against baselines.

Data (read at run time, never shipped): ``../shared/datasets/virality_cascades/``

* ``large``: the 100 SEISMIC/TiDeH cascades (each > 2,000 retweets, about 7 days);
* ``auspol``: the 3,333 small ``#auspol`` cascades (evently; CC BY-NC 4.0);
* ``example``: the SEISMIC R package's example cascade (one; scored with the large
  cascades' train split, so its figures are of a cascade never fitted on).

What is forecast: the cascade's size (the post plus its retweets) 7 days after
posting, observed for the first 15, 30 and 60 minutes. Retweets later than 7 days
are outside the horizon; that cleans the auspol outliers (one delay of about 7
years, a handful of several months), and the count of dropped events is printed.

Each dataset is split by cascade, half train and half test, with a fixed seed.
Fitted on train, scored on test only:

* ``seismic``: the plain model (:mod:`models.forecast`, no training).
* ``seismic+cal``: the plain model with the learned correction
  (:class:`models.forecast.Calibration`: per observation time, ridge quantile lines of
  the log final size on the plain forecast and a few signals (count so far, reach of
  who reshared, last 10 minutes, author's reach), and a prior on infectiousness),
  fitted on train; which signals, how much shrinkage and which quantile is the
  forecast are chosen by cross-validation inside the train split. ``forecaster`` is whichever of the two
  has the lower train error, so the correction is used only where it earns its place.
* ``counts``: the count-based variant, fed only the retweet count every 10 minutes
  (polls at T, T-10 min, ...), calibrated the same way: what Reddit, Hacker News,
  Lemmy and reviews allow.
* ``k*count``: final = k x size so far, k fitted on train per observation time (the
  k with the lowest train median error, ties broken by the mean; its band from the train ratios' 10th-90th
  percentiles).
* ``followers``: log final size regressed on log author followers (train); ranking by
  followers for AUC.
* ``median``: the train median size for everyone, a reference for what error alone
  means on a dataset selected by size (the large cascades all end above 2,000).
* ``best-const``: the one size with the lowest train MdARE, for everyone: a reference
  (not a forecast, AUC 0.5). Where it beats the forecaster on MdARE, the error
  figure measures the dataset's selection more than the forecast's skill.

Figures per dataset and observation time:

* ``MdARE``: median of |forecast - actual| / actual (final size);
* ``cover``: share of test cascades inside the 80% band (target 70-90%);
* ``AUC``: how well ``p_viral`` (for baselines: the forecast, or the follower count)
  ranks cascades that reach the train split's 90th-percentile final size;
* ``grewMdARE``: MdARE over the test cascades that grew after the observation time
  only, and ``meanARE``: the mean relative error over all. Companions, not the
  issue's metric: on auspol most cascades end at the size already seen, so every
  model that forecasts "no more" has MdARE 0 and the models tie.
* ``IS80``: the mean *interval score* of the 80% band over the final size
  (Gneiting & Raftery 2007: the band's width plus 10 x how far the final size fell
  outside it; a proper scoring rule, lower is better). The error of the forecast as a
  range, not a point: it cannot tie at 0, it punishes a band that covers by being wide
  as much as one that misses.

Usage::

    .venv/bin/python bench/forecast.py
    .venv/bin/python bench/forecast.py --json
    .venv/bin/python bench/forecast.py --data DIR --seed 7
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.forecast import (  # noqa: E402 - after the path set-up
    BAND,
    Calibration,
    Forecast,
    ForecastModel,
    forecast_counts,
    forecast_events,
)

HORIZON_SECONDS = 7 * 86400
OBSERVATION_MINUTES = (15, 30, 60)
POLL_SECONDS = 600
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "virality_cascades"


@dataclass
class Cascade:
    """One post and its reshares: seconds after posting and follower counts (the post first)."""

    id: str
    times: np.ndarray
    followers: np.ndarray

    @property
    def author_followers(self) -> float:
        return float(self.followers[0])

    @property
    def final_size(self) -> int:
        return len(self.times)

    def seen(self, age: float) -> tuple[np.ndarray, np.ndarray]:
        """The reshares (times, followers) seen by ``age`` seconds."""
        keep = self.times[1:] <= age
        return self.times[1:][keep], self.followers[1:][keep]

    def polls(self, age: float) -> list[tuple[float, int]]:
        """``(seconds, reshares so far)`` every 10 minutes, ending at ``age``."""
        moments = []
        t = age
        while t > 0:
            moments.append(t)
            t -= POLL_SECONDS
        reshares = self.times[1:]
        return [(m, int(np.sum(reshares <= m))) for m in sorted(moments)]


def _cascades(rows: list[tuple[str, float, float]]) -> tuple[list[Cascade], int]:
    grouped: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for cid, t, n in rows:
        grouped[cid].append((t, n))
    out, dropped = [], 0
    for cid, events in grouped.items():
        events.sort()
        kept = [e for e in events if e[0] <= HORIZON_SECONDS]
        dropped += len(events) - len(kept)
        out.append(Cascade(cid, np.array([e[0] for e in kept]), np.array([e[1] for e in kept])))
    return out, dropped


def load(data: Path) -> dict[str, tuple[list[Cascade], int]]:
    """The three datasets as cascades, with the events dropped beyond the 7-day horizon."""

    def read(name: str) -> list[dict[str, str]]:
        with (data / name).open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    large = [
        (r["cascade_id"], float(r["relative_time_seconds"]), float(r["followers"]))
        for r in read("seismic_tideh_sample_cascades.csv")
    ]
    auspol = [(r["cascade_id"], float(r["time"]), float(r["magnitude"])) for r in read("evently_auspol_cascades.csv")]
    example = [
        ("example", float(r["relative_time_second"]), float(r["number_of_followers"]))
        for r in read("seismic_example_tweet_cascade.csv")
    ]
    return {"large": _cascades(large), "auspol": _cascades(auspol), "example": _cascades(example)}


def folds(cascades: list[Cascade], k: int, seed: int) -> list[tuple[list[Cascade], list[Cascade]]]:
    """``k`` (train, test) splits by cascade: every cascade is tested once, by a model fitted without it."""
    shuffled = sorted(cascades, key=lambda c: c.id)
    random.Random(seed).shuffle(shuffled)
    parts = [shuffled[i::k] for i in range(k)]
    return [([c for j, part in enumerate(parts) if j != i for c in part], parts[i]) for i in range(k)]


# --------------------------------------------------------------------------- metrics


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); ``None`` without both classes."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    ranked = sorted(scores)
    # average ranks with ties
    rank_of: dict[float, float] = {}
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        rank_of[ranked[i]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(rank_of[s] for s in pos)
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


@dataclass
class Scored:
    """Forecasts (final size) for a set of cascades, with bands and a ranking score."""

    expected: list[float]
    low: list[float]
    high: list[float]
    score: list[float]


def interval_score(low: float, high: float, actual: float, alpha: float = 1 - BAND) -> float:
    """The interval score of a central ``1 - alpha`` band (Gneiting & Raftery 2007, eq. 43).

    Its width, plus ``2 / alpha`` times how far the actual value fell outside it: a proper
    scoring rule, lower is better. A band that is always wide scores badly, and so does
    one that is narrow and misses; an 80% band pays 10x every unit it misses by.
    """
    return (high - low) + (2 / alpha) * max(low - actual, 0.0) + (2 / alpha) * max(actual - high, 0.0)


def metrics(
    scored: Scored,
    actual: Sequence[int],
    viral_size: float | Sequence[float],
    seen: Sequence[int] | None = None,
) -> dict[str, float | None]:
    """The figures of one model; ``seen`` (size at the observation time) adds ``mdare_grew`` and ``mare``."""
    sizes = [viral_size] * len(actual) if isinstance(viral_size, float | int) else list(viral_size)
    errors = [abs(e - a) / a for e, a in zip(scored.expected, actual, strict=True)]
    inside = [lo <= a <= hi for lo, hi, a in zip(scored.low, scored.high, actual, strict=True)]
    extra: dict[str, float | None] = {}
    if seen is not None:
        # Tie-free companions: on auspol most cascades end at the size seen, where every model
        # that forecasts "no more" scores 0 and the median ties at 0.
        grew = [err for err, a, s in zip(errors, actual, seen, strict=True) if a > s]
        scores = [interval_score(lo, hi, a) / a for lo, hi, a in zip(scored.low, scored.high, actual, strict=True)]
        extra = {
            "mdare_grew": round(median(grew), 4) if grew else None,
            "mare": round(float(np.mean(errors)), 4),
            "interval_score": round(float(np.mean(scores)), 4),
        }
    return {
        "mdare": round(median(errors), 4),
        "coverage": round(sum(inside) / len(inside), 4),
        "auc": None
        if (v := auc(scored.score, [a >= t for a, t in zip(actual, sizes, strict=True)])) is None
        else round(v, 4),
        **extra,
    }


# --------------------------------------------------------------------------- the forecasters


def _event_forecast(c: Cascade, age: float, threshold: float, model: ForecastModel) -> Forecast:
    times, followers = c.seen(age)
    return forecast_events(
        times, followers, c.author_followers, age, horizon=_HORIZON, threshold=threshold, model=model
    )


def _count_forecast(c: Cascade, age: float, threshold: float, model: ForecastModel) -> Forecast:
    return forecast_counts(
        c.polls(age), c.author_followers, age, horizon=_HORIZON, threshold=threshold, model=model, unit="reposts"
    )


_HORIZON = timedelta(seconds=HORIZON_SECONDS)

Runner = Callable[[Cascade, float, float, ForecastModel], Forecast]


def run_model(cascades: list[Cascade], age: float, viral_size: float, model: ForecastModel, runner: Runner) -> Scored:
    # The forecast counts reshares; sizes count the post too (+1 everywhere).
    out = Scored([], [], [], [])
    for c in cascades:
        f = runner(c, age, viral_size - 1, model)
        out.expected.append(f.expected_final + 1)
        out.low.append(f.low + 1)
        out.high.append(f.high + 1)
        out.score.append(f.p_viral + 1e-9 * f.expected_final)  # ties (p_viral 0 or 1) broken by the forecast
    return out


#: Prior strengths (in reshares) the calibration chooses from, on the train split.
PRIOR_STRENGTHS = (0.5, 2.0, 8.0)


def calibrate(
    train: list[Cascade], age: float, viral_size: float, base: ForecastModel, runner: Runner
) -> ForecastModel:
    """The learned correction at one observation age, fitted on ``train`` only.

    A prior on infectiousness (the median over train cascades with reshares; its
    weight the one of :data:`PRIOR_STRENGTHS` with the lowest train error plus
    train ranking loss, 1 - AUC), then
    :meth:`Calibration.fit` on the plain forecasts made with it.
    """
    ps = []
    for c in train:
        f = runner(c, age, viral_size - 1, base)
        if f.observed > 0 and f.infectiousness > 0:
            ps.append(f.infectiousness)
    prior_p = float(np.median(ps)) if ps else 0.0
    best: tuple[float, ForecastModel] | None = None
    for strength in PRIOR_STRENGTHS if ps else (0.0,):
        with_prior = replace(base, calibration=Calibration(prior_infectiousness=prior_p, prior_strength=strength))
        samples = [(age, runner(c, age, viral_size - 1, with_prior), c.final_size - 1) for c in train]
        fitted = replace(
            base, calibration=Calibration.fit(samples, prior_infectiousness=prior_p, prior_strength=strength)
        )
        scored = run_model(train, age, viral_size, fitted, runner)
        train_metrics = metrics(scored, [c.final_size for c in train], viral_size)
        error = (train_metrics["mdare"] or 0.0) + 1.0 - (train_metrics["auc"] or 0.5)
        if best is None or error < best[0]:
            best = (error, fitted)
    assert best is not None
    return best[1]


def k_times_count(train: list[Cascade], test: list[Cascade], age: float) -> Scored:
    def size_at(c: Cascade) -> int:
        return 1 + len(c.seen(age)[0])

    ratios = np.array([c.final_size / size_at(c) for c in train])
    candidates = np.unique(np.quantile(ratios, np.linspace(0, 1, 201)))
    sizes = np.array([size_at(c) for c in train], dtype=float)
    finals = np.array([c.final_size for c in train], dtype=float)

    def train_error(k: float) -> tuple[float, float]:
        # The median error, ties broken by the mean (as the forecaster's calibration breaks them).
        error = np.abs(k * sizes - finals) / finals
        return round(float(np.median(error)), 9), round(float(np.mean(error)), 9)

    best_k = min(candidates, key=train_error)
    lo, hi = np.quantile(ratios, [0.1, 0.9])
    now = [size_at(c) for c in test]
    return Scored([best_k * n for n in now], [lo * n for n in now], [hi * n for n in now], [float(n) for n in now])


def constant(train: list[Cascade], test: list[Cascade]) -> Scored:
    """The train median size for every cascade: no forecast at all (a reference, not a baseline to beat).

    On the large cascades, selected for a final size above 2,000, this already scores a
    low median error: there, error mostly measures how far a model shrinks toward the
    typical size. It ranks nothing (AUC 0.5).
    """
    sizes = np.array([c.final_size for c in train], dtype=float)
    mid, lo, hi = (float(v) for v in np.quantile(sizes, [0.5, 0.1, 0.9]))
    return Scored([mid] * len(test), [lo] * len(test), [hi] * len(test), [0.0] * len(test))


def best_constant(train: list[Cascade], test: list[Cascade]) -> Scored:
    """The one size for every cascade with the lowest train MdARE (a reference, not a forecast).

    What MdARE alone rewards on a dataset selected by size: on the large cascades (all
    above 2,000) a constant a little above the floor beats every forecast on error. It
    ranks nothing (AUC 0.5); its band is the train 10th-90th percentile.
    """
    sizes = np.array([c.final_size for c in train], dtype=float)
    candidates = np.unique(np.quantile(sizes, np.linspace(0, 1, 201)))
    best = min(candidates, key=lambda v: float(np.median(np.abs(v - sizes) / sizes)))
    lo, hi = (float(v) for v in np.quantile(sizes, [0.1, 0.9]))
    return Scored([float(best)] * len(test), [lo] * len(test), [hi] * len(test), [0.0] * len(test))


def by_followers(train: list[Cascade], test: list[Cascade]) -> Scored:
    x = np.log1p([c.author_followers for c in train])
    y = np.log([c.final_size for c in train])
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(np.mean(y)))
    resid = y - (slope * x + intercept)
    lo, hi = np.quantile(resid, [0.1, 0.9])
    centre = [slope * math.log1p(c.author_followers) + intercept for c in test]
    bias = float(np.median(resid))
    return Scored(
        [math.exp(m + bias) for m in centre],
        [math.exp(m + lo) for m in centre],
        [math.exp(m + hi) for m in centre],
        [c.author_followers for c in test],
    )


# --------------------------------------------------------------------------- the run


MODELS = ("seismic", "seismic+cal", "counts", "k*count", "followers", "median", "best-const")


def _score_fold(train: list[Cascade], test: list[Cascade], age: float) -> tuple[dict[str, Scored], float, bool]:
    """Every model's forecasts for ``test``, fitted on ``train``; the viral size; whether calibration won on train."""
    viral_size = float(np.quantile([c.final_size for c in train], 0.9))
    plain = ForecastModel()
    cal = calibrate(train, age, viral_size, plain, _event_forecast)
    counts_cal = calibrate(train, age, viral_size, plain, _count_forecast)
    train_actual = [c.final_size for c in train]
    train_plain = metrics(run_model(train, age, viral_size, plain, _event_forecast), train_actual, viral_size)
    train_cal = metrics(run_model(train, age, viral_size, cal, _event_forecast), train_actual, viral_size)
    scored = {
        "seismic": run_model(test, age, viral_size, plain, _event_forecast),
        "seismic+cal": run_model(test, age, viral_size, cal, _event_forecast),
        "counts": run_model(test, age, viral_size, counts_cal, _count_forecast),
        "k*count": k_times_count(train, test, age),
        "followers": by_followers(train, test),
        "median": constant(train, test),
        "best-const": best_constant(train, test),
    }
    return scored, viral_size, (train_cal["mdare"] or 0) <= (train_plain["mdare"] or 0)


DATASETS = ("large", "auspol", "example")


def evaluate(data: Path, seed: int, k: int, limit: int | None, names: Sequence[str] = DATASETS) -> dict[str, Any]:
    datasets = load(data)
    results: dict[str, Any] = {"horizon_days": HORIZON_SECONDS / 86400, "seed": seed, "folds": k, "datasets": {}}
    for name in names:
        cascades, dropped = datasets[name]
        if limit:
            cascades = sorted(cascades, key=lambda c: c.id)[:limit]
        # The example cascade is scored by models fitted on all the large ones (never on itself).
        splits = [(datasets["large"][0], cascades)] if name == "example" else folds(cascades, k, seed)
        entry: dict[str, Any] = {"cascades": len(cascades), "events_beyond_horizon_dropped": dropped, "by_minutes": {}}
        for minutes in OBSERVATION_MINUTES:
            age = minutes * 60.0
            pooled = {m: Scored([], [], [], []) for m in MODELS}
            actual: list[int] = []
            seen: list[int] = []
            viral: list[float] = []
            calibration_won = 0
            for train, test in splits:
                scored, viral_size, won = _score_fold(train, test, age)
                calibration_won += won
                for m in MODELS:
                    for attr in ("expected", "low", "high", "score"):
                        getattr(pooled[m], attr).extend(getattr(scored[m], attr))
                actual.extend(c.final_size for c in test)
                seen.extend(1 + len(c.seen(age)[0]) for c in test)
                viral.extend([viral_size] * len(test))
            rows = {m: metrics(pooled[m], actual, viral, seen) for m in MODELS}
            uses_cal = calibration_won * 2 > len(splits)
            rows["forecaster"] = {**rows["seismic+cal" if uses_cal else "seismic"], "calibrated": uses_cal}
            entry["by_minutes"][str(minutes)] = rows
        entry["viral_size_p90"] = viral[0] if len(set(viral)) == 1 else f"{min(viral):g}-{max(viral):g}"
        results["datasets"][name] = entry
    return results


def _fmt(value: float | None, width: int = 7) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.3f}"


def print_table(results: dict[str, Any]) -> None:
    print(
        f"final size at {results['horizon_days']:g} days; {results['folds']}-fold split by cascade "
        f"(seed {results['seed']}): every cascade scored by models fitted without it"
    )
    for name, entry in results["datasets"].items():
        print()
        print(
            f"{name}: {entry['cascades']} cascades; viral = size >= {entry['viral_size_p90']} (train p90); "
            f"{entry['events_beyond_horizon_dropped']} events beyond the horizon dropped"
        )
        print(
            f"  {'minutes':>7} {'model':<12} {'MdARE':>7} {'cover':>7} {'AUC':>7} {'grewMdARE':>9} {'meanARE':>7} "
            f"{'IS80':>7}"
        )
        for minutes, rows in entry["by_minutes"].items():
            for model, m in rows.items():
                note = " (calibrated)" if m.get("calibrated") else (" (plain)" if model == "forecaster" else "")
                print(
                    f"  {minutes:>7} {model:<12} {_fmt(m['mdare'])} {_fmt(m['coverage'])} {_fmt(m['auc'])} "
                    f"{_fmt(m.get('mdare_grew'), 9)} {_fmt(m.get('mare'))} {_fmt(m.get('interval_score'))}{note}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the virality_cascades folder")
    parser.add_argument("--seed", type=int, default=20151001, help="the train/test split's seed")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (by cascade)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many cascades per dataset (a quick look)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="which to run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: {args.data} not found (the shared datasets folder)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results = evaluate(args.data, args.seed, args.folds, args.limit, args.datasets)
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
        print(f"\n{results['seconds']} s; command: {' '.join(['bench/forecast.py', *(argv or sys.argv[1:])])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

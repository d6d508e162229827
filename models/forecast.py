"""How far will this post spread? A self-exciting forecast of its final reshare count.

The model follows SEISMIC (Zhao, Erdogdu, He, Rajaraman & Leskovec, KDD 2015),
written here from the paper:

* Every reshare exposes the post to its author's followers. A reshare by an account
  with ``n`` followers, ``s`` seconds ago, raises the rate of new reshares by
  ``p * n * phi(s)``: ``p`` is the post's *infectiousness* (reshares per exposed
  follower) and ``phi`` a memory kernel, constant for the first ``s0`` = 5 minutes
  and then a power law ``(s / s0) ** -(1 + theta)``, ``theta`` about 0.24 (a
  decay exponent of about 1.24: attention fades, slowly).
* ``p`` is estimated from the recent reshares: the reshares seen in a window before
  now (recent ones weigh more, a triangular kernel) over the *exposure* the model
  expects in that window, ``sum(n_i * integral of phi)``. Few reshares give a wide
  (gamma) interval on ``p``.
* The remaining reshares within the horizon are the direct ones still owed by the
  exposure so far, ``p * sum(n_i * (Phi(H - t_i) - Phi(t - t_i)))``, times the
  branching of later generations ``1 / (1 - rho)``, ``rho = p * n_star * Phi(H - t)``
  (``n_star``: the reach of a typical resharer). Above the critical value
  (``rho`` >= 1) the paper's answer is infinite; here ``rho`` is capped at
  :data:`RHO_MAX`, so the answer stays bounded, the band wide, and the forecast
  says ``supercritical``.
* The band: ``log(1 + remaining)`` is normal around the forecast, with the spread
  of ``p``'s estimate (amplified by the branching) and a model error that shrinks
  as the post ages. ``p_viral`` is the chance of crossing the configured
  threshold within the horizon under that distribution.

No training is needed. :class:`Calibration` is the optional learned correction
(per observation age, quantile lines on the plain forecast and a few other signals,
fitted on training cascades by ``bench/forecast.py``); it is used only where it
beats the plain model there. The flags use the plain model.

Two inputs:

* *events* (:func:`forecast` with :class:`moments.records.Reshare` items, or
  :func:`forecast_events` with seconds and follower counts): sources that list who
  reshared (Mastodon ``reblogged_by``, Bluesky ``getRepostedBy`` + profiles).
* *counts* (:func:`forecast` with :class:`moments.records.EngagementSnapshot` items,
  or :func:`forecast_counts`): sources that give only a count at each poll (Reddit,
  Hacker News, Lemmy, reviews). The increments between polls are spread evenly
  over their interval, each with a typical resharer's reach, and fitted with the
  same kernel. It knows less (who reshared, exactly when), so its band is wider;
  ``bench/forecast.py`` measures how much worse it does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Literal

import numpy as np

from moments.records import EngagementSnapshot, Post, Reshare

#: The kernel's flat start, in seconds (SEISMIC: 5 minutes).
KERNEL_S0 = 300.0
#: The power-law tail exponent is ``1 + KERNEL_THETA`` (SEISMIC fits 0.242 on Twitter).
KERNEL_THETA = 0.242
#: The reach of a typical resharer, for the later generations and for unknown resharers.
DEFAULT_N_STAR = 100.0
#: Branching above this is treated as this (bounded answer, wide band, ``supercritical``).
RHO_MAX = 0.9
#: The triangular window over recent reshares: half the post's age, within these bounds...
WINDOW_MIN_SECONDS = 300.0
WINDOW_MAX_SECONDS = 2 * 3600.0
#: ...widened until it holds at least this many reshares (or the whole history).
WINDOW_MIN_RESHARES = 5
#: The model's own error (log scale) at 15 minutes, shrinking with the square root of age.
MODEL_SIGMA_15MIN = 0.9
#: The floor of the model error, however old the post.
MODEL_SIGMA_MIN = 0.25
#: The count-based variant's extra error (log scale): it cannot see who reshared, or when.
COUNTS_SIGMA = 0.35
#: The band's coverage (80%: from the 10th to the 90th percentile).
BAND = 0.8

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Kernel:
    """SEISMIC's memory kernel: flat for ``s0`` seconds, then ``(s / s0) ** -(1 + theta)``, integrating to 1."""

    s0: float = KERNEL_S0
    theta: float = KERNEL_THETA

    @property
    def c(self) -> float:
        return self.theta / (self.s0 * (1 + self.theta))

    def density(self, age: np.ndarray) -> np.ndarray:
        age = np.maximum(np.asarray(age, dtype=float), 0.0)
        tail = self.c * np.power(np.maximum(age, self.s0) / self.s0, -(1 + self.theta))
        return np.where(age <= self.s0, self.c, tail)

    def cdf(self, age: np.ndarray) -> np.ndarray:
        """``Phi(age)``: the share of a reshare's influence spent after ``age`` seconds."""
        age = np.maximum(np.asarray(age, dtype=float), 0.0)
        head = self.c * age
        tail = self.c * self.s0 * (1 + (1 - np.power(np.maximum(age, self.s0) / self.s0, -self.theta)) / self.theta)
        return np.where(age <= self.s0, head, tail)

    def first_moment(self, age: np.ndarray) -> np.ndarray:
        """``G(age) = integral of x * phi(x) from 0 to age`` (for the triangular window)."""
        age = np.maximum(np.asarray(age, dtype=float), 0.0)
        s0, theta, c = self.s0, self.theta, self.c
        head = c * age**2 / 2
        tail = c * s0**2 / 2 + c * s0 ** (1 + theta) * (
            np.power(np.maximum(age, s0), 1 - theta) - s0 ** (1 - theta)
        ) / (1 - theta)
        return np.where(age <= s0, head, tail)


#: The quantiles a calibration fits per observation age: the band's ends and the median.
CALIBRATED_QUANTILES = (0.1, 0.5, 0.9)
#: The quantile pairs the band's lines may be fitted at, the nominal 10th-90th first. A count is
#: discrete and never below what was seen: where most cascades are already over (on ``#auspol``
#: about two in three at 60 minutes), every band that starts at the count covers them, and the
#: 10th-90th lines cover far more than 80%. The calibration picks the pair whose *cross-validated*
#: coverage within its training cascades is nearest :data:`BAND` (the idea of conformalized
#: quantile regression, Romano et al. 2019: calibrate the band on held-out data, not on faith).
CALIBRATION_BAND_LEVELS: tuple[tuple[float, float], ...] = (
    (0.1, 0.9),
    (0.05, 0.95),
    (0.1, 0.85),
    (0.15, 0.85),
    (0.1, 0.8),
    (0.2, 0.8),
    (0.1, 0.75),
    (0.25, 0.75),
    (0.1, 0.7),
)

#: What the learned correction may read about a post at the time of the forecast (each as ``log(1 + x)``).
SIGNAL_NAMES = ("plain", "observed", "reach_seen", "recent", "author_reach")
#: The signal sets a calibration chooses from (by cross-validation on its training cascades): the plain
#: forecast alone (SEISMIC's own correction), with the count so far, with the reach of who reshared, all.
CALIBRATION_FEATURE_SETS: tuple[tuple[str, ...], ...] = (
    ("plain",),
    ("plain", "observed"),
    ("plain", "reach_seen"),
    ("plain", "observed", "reach_seen"),
    SIGNAL_NAMES,
)
#: Ridge penalties (on standardised signals) the calibration chooses from: ~50-100 training cascades
#: cannot carry five free weights, so they are shrunk toward the intercept.
CALIBRATION_PENALTIES = (0.01, 0.1, 1.0)
#: The quantiles the calibration may report as *the* forecast, chosen to minimise the relative error.
CALIBRATION_POINT_QUANTILES = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
#: Folds of the inner cross-validation that chooses signals, penalty and point quantile.
CALIBRATION_FOLDS = 5
#: The choice is made on at most this many training cascades (evenly spread); the lines are fitted on all.
#: Thousands of cascades choose no better than hundreds, and the choice fits ~100 regressions.
CALIBRATION_CHOICE_ROWS = 600
#: "Recent" reshares: those within this many seconds before the forecast.
RECENT_SECONDS = 600.0


@dataclass(frozen=True)
class Signals:
    """What is known about a post when it is forecast, for the learned correction.

    Attributes:
        plain: The plain model's forecast of the count at the horizon.
        observed: The count seen so far.
        reach_seen: The followers of everyone who reshared so far (counts: a typical reach each).
        recent: Reshares within :data:`RECENT_SECONDS` before now.
        author_reach: The author's followers.
    """

    plain: float
    observed: float
    reach_seen: float
    recent: float
    author_reach: float

    def vector(self, names: Sequence[str]) -> list[float]:
        """``[1, log(1 + signal) for each name]``: the regression's row."""
        return [1.0, *(math.log1p(max(float(getattr(self, name)), 0.0)) for name in names)]


@dataclass(frozen=True)
class Calibration:
    """A learned correction of the plain model, per observation age, fitted on held-out cascades.

    At each age, quantiles (10th, 50th, 90th, and the point quantile) of
    ``log(1 + final)`` are regressed on the log of a few :class:`Signals` (the plain
    forecast, and possibly the count so far, the reach of who reshared, the recent
    rate and the author's reach), a linear quantile regression with a ridge penalty.
    This is SEISMIC's own remedy in spirit (the paper scales its prediction with
    factors fitted on training tweets). Which signals, how much shrinkage, and which
    quantile is reported as the forecast are chosen by cross-validation *within* the
    training cascades (:meth:`fit`), never on the cascades it is scored on.

    The point quantile: relative error ``|forecast - actual| / actual`` punishes an
    over-forecast of a small cascade more than an under-forecast of a large one, so
    the forecast that minimises it lies below the median of the predicted
    distribution; on cascades selected for being large it lies well below. The band
    is the 10th to 90th percentile unless cross-validation within the training
    cascades shows that pair covering far from 80% (then the pair in
    :data:`CALIBRATION_BAND_LEVELS` whose held-out coverage is nearest 80%), and
    ``p_viral`` reads the threshold against the predicted distribution (a split normal
    through the band's lines and the median), not against the point.

    Attributes:
        ages: Observation ages in seconds, ascending; the nearest (in log time) applies.
        features: Per age, the :class:`Signals` names the lines read.
        lines: Per age, per quantile (band low, 50th, band high, point): the intercept
            and the weight of each feature (``log(1 + signal)``).
        point_quantiles: Per age, the quantile reported as the forecast.
        band_levels: Per age, the quantiles the band's low and high lines were fitted at
            (empty: the nominal 10th and 90th).
        prior_infectiousness: A prior on ``p`` worth ``prior_strength`` reshares, so that a
            post with no reshares yet does not forecast nothing (ranked by its author's reach).
        prior_strength: Weight of that prior, in reshares.
    """

    ages: tuple[float, ...] = ()
    features: tuple[tuple[str, ...], ...] = ()
    lines: tuple[tuple[tuple[float, ...], ...], ...] = ()
    point_quantiles: tuple[float, ...] = ()
    band_levels: tuple[tuple[float, float], ...] = ()
    prior_infectiousness: float = 0.0
    prior_strength: float = 0.0

    def nearest(self, age: float) -> int | None:
        """The index of the fitted age nearest to ``age`` (``None``: no correction)."""
        if not self.ages:
            return None
        return min(range(len(self.ages)), key=lambda k: abs(math.log1p(self.ages[k]) - math.log1p(age)))

    @classmethod
    def fit(
        cls,
        samples: Sequence[tuple[float, Forecast, int]],
        *,
        prior_infectiousness: float = 0.0,
        prior_strength: float = 0.0,
        feature_sets: Sequence[tuple[str, ...]] = CALIBRATION_FEATURE_SETS,
        penalties: Sequence[float] = CALIBRATION_PENALTIES,
        point_quantiles: Sequence[float] = CALIBRATION_POINT_QUANTILES,
        band_levels: Sequence[tuple[float, float]] = CALIBRATION_BAND_LEVELS,
        folds: int = CALIBRATION_FOLDS,
    ) -> Calibration:
        """Fit from ``(age, plain forecast, actual final count)`` samples.

        The plain forecasts must come from a model with the same prior as given here,
        and carry their :attr:`Forecast.signals`. Per age, the signal set and penalty
        with the lowest cross-validated pinball loss of the median are chosen, then the
        point quantile with the lowest cross-validated median relative error (ties: the
        lower mean relative error, then the one nearest the median), then the band's
        quantile pair with the cross-validated coverage nearest :data:`BAND` (ties: the
        earlier pair). Fewer than ``2 * folds``
        samples at an age: the plain forecast alone, lightly shrunk, the median and the
        nominal band.
        """
        by_age: dict[float, list[tuple[Signals, int]]] = {}
        for age, plain, actual in samples:
            if plain.signals is None:
                raise ValueError("Calibration.fit needs forecasts that carry their signals")
            by_age.setdefault(age, []).append((plain.signals, max(int(actual), 0)))
        ages, features, lines, points, bands = [], [], [], [], []
        for age in sorted(by_age):
            rows = by_age[age]
            finals = np.array([a for _, a in rows], dtype=float)
            chosen, penalty, point, band = _choose(
                rows, finals, feature_sets, penalties, point_quantiles, band_levels, folds
            )
            x = np.array([s.vector(chosen) for s, _ in rows])
            y = np.log1p(finals)
            quantiles = (band[0], 0.5, band[1], point)
            fitted = [_ridge_quantile_regression(x, y, q, penalty) for q in quantiles]
            ages.append(age)
            features.append(tuple(chosen))
            lines.append(tuple(tuple(float(v) for v in beta) for beta in fitted))
            points.append(point)
            bands.append(band)
        return cls(
            tuple(ages),
            tuple(features),
            tuple(lines),
            tuple(points),
            tuple(bands),
            prior_infectiousness,
            prior_strength,
        )

    def apply(self, index: int, signals: Signals, threshold: float | None) -> tuple[float, float, float, float]:
        """``(expected, low, high, p_viral)`` corrected at fitted age ``index``."""
        x = np.array(signals.vector(self.features[index]))
        low_log, mid_log, high_log = sorted(float(np.dot(line, x)) for line in self.lines[index][:3])
        point_log = min(max(float(np.dot(self.lines[index][3], x)), low_log), high_log)
        observed = signals.observed

        def final(log_value: float, rounding: Callable[[float], float]) -> float:
            # A count: the median of a count is a whole number (and never below what was seen).
            return max(float(rounding(math.expm1(min(log_value, 50.0)))), float(observed))

        expected, low, high = final(point_log, round), final(low_log, math.floor), final(high_log, math.ceil)
        if threshold is None:
            p_viral = 0.0
        elif observed >= threshold:
            p_viral = 1.0
        else:
            # A split normal through the three fitted quantiles: the upper half's spread from the
            # band's high line, the lower half's from its low one (a skewed forecast stays skewed).
            needed = math.log1p(threshold)
            low_level, high_level = self.band_levels[index] if self.band_levels else (0.5 - BAND / 2, 0.5 + BAND / 2)
            upper = needed >= mid_log
            edge = high_log if upper else low_log
            z = _NORMAL.inv_cdf(high_level if upper else 1 - low_level)
            spread = max(abs(edge - mid_log) / z, 0.05)
            p_viral = min(max(1 - _NORMAL.cdf((needed - mid_log) / spread), 0.001), 0.999)
        return expected, low, high, p_viral


def _relative_error(forecast_log: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """``|forecast - actual| / (1 + actual)``: the relative error of the size (the post counts as one)."""
    return np.abs(np.expm1(np.minimum(forecast_log, 50.0)) - actual) / (1 + actual)


def _choose(
    rows: list[tuple[Signals, int]],
    actual: np.ndarray,
    feature_sets: Sequence[tuple[str, ...]],
    penalties: Sequence[float],
    point_quantiles: Sequence[float],
    band_levels: Sequence[tuple[float, float]],
    folds: int,
) -> tuple[tuple[str, ...], float, float, tuple[float, float]]:
    """The signal set, penalty, point quantile and band pair, by ``folds``-fold cross-validation within ``rows``."""
    nominal = (0.5 - BAND / 2, 0.5 + BAND / 2)
    if len(rows) < 2 * folds:
        return ("plain",), min(penalties, default=0.0), 0.5, nominal
    if len(rows) > CALIBRATION_CHOICE_ROWS:
        keep = np.linspace(0, len(rows) - 1, CALIBRATION_CHOICE_ROWS).round().astype(int)
        rows, actual = [rows[i] for i in keep], actual[keep]
    y = np.log1p(actual)
    # A fixed interleaved split (the caller's order), so that a fit is reproducible.
    fold_of = np.arange(len(rows)) % folds

    def held_out(names: tuple[str, ...], penalty: float, tau: float) -> np.ndarray:
        x = np.array([s.vector(names) for s, _ in rows])
        out = np.empty(len(rows))
        for k in range(folds):
            test = fold_of == k
            beta = _ridge_quantile_regression(x[~test], y[~test], tau, penalty)
            out[test] = x[test] @ beta
        return out

    def pinball(names: tuple[str, ...], penalty: float) -> float:
        residual = y - held_out(names, penalty, 0.5)
        return float(np.mean(np.abs(residual)))  # the pinball loss at the median, times 2

    names, penalty = min(((n, p) for n in feature_sets for p in penalties), key=lambda c: pinball(*c))
    relative = {tau: _relative_error(held_out(names, penalty, tau), actual) for tau in point_quantiles}
    medians = {tau: float(np.median(error)) for tau, error in relative.items()}
    best = min(medians.values())
    # Ties in the median (on small cascades most forecasts of "no more" are exact, so the
    # median error is 0 for several quantiles) are broken by the mean relative error, then
    # by nearness to the median.
    point = min(
        (tau for tau, median in medians.items() if median <= best + 1e-9),
        key=lambda tau: (round(float(np.mean(relative[tau])), 9), -tau),
    )
    observed = np.array([s.observed for s, _ in rows])

    def coverage(levels: tuple[float, float]) -> float:
        # As :meth:`Calibration.apply` reports the band: whole counts, never below what was seen.
        low = np.maximum(np.floor(np.expm1(np.minimum(held_out(names, penalty, levels[0]), 50.0))), observed)
        high = np.maximum(np.ceil(np.expm1(np.minimum(held_out(names, penalty, levels[1]), 50.0))), observed)
        return float(np.mean((low <= actual) & (actual <= high)))

    band = min(band_levels or (nominal,), key=lambda levels: abs(coverage(levels) - BAND))
    return names, penalty, point, band


def _ridge_quantile_regression(
    x: np.ndarray, y: np.ndarray, tau: float, penalty: float, iterations: int = 100
) -> np.ndarray:
    """Linear quantile regression (the pinball loss) with a ridge penalty, by iteratively reweighted least squares.

    ``x``'s first column is the intercept (not penalised); the others are standardised
    for the penalty, which is ``penalty * n`` on the least-squares scale, and the
    weights returned are on the original scale.
    """
    n, k = x.shape
    mean = x[:, 1:].mean(axis=0)
    scale = x[:, 1:].std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = np.column_stack([np.ones(n), (x[:, 1:] - mean) / scale])
    ridge = np.eye(k) * penalty * n
    ridge[0, 0] = 0.0
    # A feature constant on the training rows carries no information: pin its weight to zero.
    ridge[1:, 1:] += np.diag(np.where(x[:, 1:].std(axis=0) > 1e-12, 0.0, 1e12))
    beta = np.linalg.solve(z.T @ z + ridge + 1e-9 * np.eye(k), z.T @ y)
    for _ in range(iterations):
        residual = y - z @ beta
        weights = np.where(residual >= 0, tau, 1 - tau) / np.maximum(np.abs(residual), 1e-4)
        weights = weights / weights.mean()
        updated = np.linalg.solve((z * weights[:, None]).T @ z + ridge + 1e-9 * np.eye(k), (z * weights[:, None]).T @ y)
        converged = float(np.max(np.abs(updated - beta))) < 1e-6  # (np.allclose costs more than the solve)
        beta = updated
        if converged:
            break
    slopes = beta[1:] / scale
    return np.concatenate(([beta[0] - float(np.dot(slopes, mean))], slopes))


@dataclass(frozen=True)
class Forecast:
    """How many reshares (or interactions) a post will have by the end of ``horizon``.

    Attributes:
        expected_final: The forecast count at the horizon (seen so far included).
        low: The band's low end (10th percentile).
        high: The band's high end (90th percentile).
        p_viral: Probability of reaching ``threshold`` within the horizon.
        horizon: Time from posting the forecast is for.
        observed: The count seen so far.
        infectiousness: The estimated ``p`` (reshares per exposed follower).
        branching: ``rho``, the expected offspring of a typical reshare (capped at :data:`RHO_MAX`).
        supercritical: ``rho`` reached the cap: the post may keep spreading; the band is wide.
        method: ``events`` (who reshared, and when), ``counts`` (counts per poll) or
            ``none`` (nothing to go on yet).
        threshold: The count ``p_viral`` refers to.
        unit: What is counted (``reposts`` or ``interactions``), for the reasons.
        calibrated: The learned correction (:class:`Calibration`) was applied.
        signals: What the forecast was made from, for fitting a :class:`Calibration`
            (``None`` where the horizon has passed).
    """

    expected_final: float
    low: float
    high: float
    p_viral: float
    horizon: timedelta
    observed: int = 0
    infectiousness: float = 0.0
    branching: float = 0.0
    supercritical: bool = False
    method: Literal["events", "counts", "none"] = "none"
    threshold: float | None = None
    unit: str = "reposts"
    calibrated: bool = False
    signals: Signals | None = None

    def describe(self) -> str:
        """The forecast in words, e.g. ``forecast 3,800 reposts in 24 h (80% range 2,100-6,000; p_viral 0.82)``."""
        hours = self.horizon.total_seconds() / 3600
        span = f"{hours:g} h" if hours < 72 else f"{hours / 24:g} d"
        text = (
            f"forecast {_round(self.expected_final):,} {self.unit} in {span} "
            f"({BAND:.0%} range {_round(self.low):,}–{_round(self.high):,}; p_viral {self.p_viral:.2f})"
        )
        return text + (", still accelerating past the critical point" if self.supercritical else "")


def _round(value: float) -> int:
    """Two significant figures above 100: a forecast is not precise to the unit."""
    if value < 100:
        return round(value)
    digits = math.floor(math.log10(value)) - 1
    return int(round(value, -digits))


@dataclass(frozen=True)
class ForecastModel:
    """The forecaster's settings; the defaults are SEISMIC's, untrained."""

    kernel: Kernel = field(default_factory=Kernel)
    n_star: float = DEFAULT_N_STAR
    calibration: Calibration = field(default_factory=Calibration)

    # ----------------------------------------------------------------- estimation

    def infectiousness(
        self, times: np.ndarray, weights: np.ndarray, age: float, reshares: np.ndarray
    ) -> tuple[float, float, float]:
        """``(p, effective reshares, exposure)`` at ``age`` seconds after posting.

        Args:
            times: Seconds after posting of every event so far, the post itself first (0).
            weights: Each event's reach (followers).
            age: Now, in seconds after posting.
            reshares: Seconds after posting of the reshares only (what is counted).
        """
        window = min(max(age / 2, WINDOW_MIN_SECONDS), WINDOW_MAX_SECONDS, max(age, 1.0))
        recent = reshares[reshares > age - window]
        if len(recent) < WINDOW_MIN_RESHARES and len(reshares) > len(recent):
            # Too few to judge: reach back to the last few reshares (at most the whole life).
            kth = reshares[-min(WINDOW_MIN_RESHARES, len(reshares))]
            window = min(max(1.25 * (age - kth), window), max(age, 1.0))
        weight_of = np.clip(1 - (age - reshares) / window, 0.0, 1.0)
        counted = float(np.sum(weight_of))
        b = age - times
        a = np.maximum(age - window - times, 0.0)
        k = self.kernel
        exposure_each = (1 - b / window) * (k.cdf(b) - k.cdf(a)) + (k.first_moment(b) - k.first_moment(a)) / window
        exposure = float(np.sum(weights * np.maximum(exposure_each, 0.0)))
        cal = self.calibration
        counted_total = counted + cal.prior_strength
        prior_exposure = cal.prior_strength / cal.prior_infectiousness if cal.prior_infectiousness > 0 else 0.0
        denominator = exposure + prior_exposure
        p = counted_total / denominator if denominator > 0 else 0.0
        return p, counted_total, denominator

    def predict(
        self,
        times: np.ndarray,
        weights: np.ndarray,
        reshares: np.ndarray,
        age: float,
        horizon: float,
        threshold: float | None,
        *,
        extra_sigma: float = 0.0,
    ) -> tuple[float, float, float, float, float, float, bool]:
        """``(expected, low, high, p_viral, p, rho, supercritical)`` for the counts at ``horizon`` seconds."""
        observed = len(reshares)
        if age >= horizon:
            done = float(observed)
            p_viral = 1.0 if threshold is not None and done >= threshold else 0.0
            return done, done, done, p_viral, 0.0, 0.0, False
        p, effective, _exposure = self.infectiousness(times, weights, age, reshares)
        k = self.kernel
        owed = float(np.sum(weights * np.maximum(k.cdf(horizon - times) - k.cdf(age - times), 0.0)))
        direct = p * owed
        rho_raw = p * self.n_star * float(k.cdf(np.array(horizon - age)))
        rho = min(rho_raw, RHO_MAX)
        remaining = direct / (1 - rho)
        bias = 0.0
        sigma_model = max(MODEL_SIGMA_15MIN * math.sqrt(900.0 / max(age, 60.0)), MODEL_SIGMA_MIN)
        # p's relative error (Poisson count of reshares), amplified by the branching.
        sigma_p = (1 / math.sqrt(effective + 1)) / (1 - rho) if p > 0 else 0.0
        supercritical = rho_raw >= RHO_MAX
        sigma = math.sqrt(sigma_model**2 + min(sigma_p, 3.0) ** 2 + extra_sigma**2 + (1.0 if supercritical else 0.0))
        centre = math.log1p(remaining) + bias
        z = _NORMAL.inv_cdf(0.5 + BAND / 2)
        expected = observed + math.expm1(centre)
        low = observed + max(math.expm1(centre - z * sigma), 0.0)
        high = observed + math.expm1(min(centre + z * sigma, 50.0))
        if threshold is None:
            p_viral = 0.0
        elif observed >= threshold:
            p_viral = 1.0
        else:
            needed = math.log1p(threshold - observed)
            p_viral = 1 - _NORMAL.cdf((needed - centre) / sigma) if sigma > 0 else float(centre >= needed)
        return expected, low, high, p_viral, p, rho_raw, supercritical


DEFAULT_MODEL = ForecastModel()


def forecast_events(
    reshare_seconds: Sequence[float] | np.ndarray,
    reshare_followers: Sequence[float | None] | np.ndarray,
    author_followers: float | None,
    age_seconds: float,
    *,
    horizon: timedelta = timedelta(hours=24),
    threshold: float | None = None,
    model: ForecastModel = DEFAULT_MODEL,
) -> Forecast:
    """The forecast from individual reshares: when (seconds after posting) and by whom (followers).

    Reshares after ``age_seconds`` are ignored (not seen yet); negative times (clock
    skew) count as posting time; an unknown follower count counts as ``n_star``.
    """
    seconds = np.clip(np.asarray(reshare_seconds, dtype=float), 0.0, None)
    followers = np.array([model.n_star if f is None else max(float(f), 0.0) for f in reshare_followers], dtype=float)
    seen = seconds <= age_seconds
    seconds, followers = seconds[seen], followers[seen]
    order = np.argsort(seconds, kind="stable")
    seconds, followers = seconds[order], followers[order]
    author = model.n_star if author_followers is None else max(float(author_followers), 0.0)
    times = np.concatenate(([0.0], seconds))
    weights = np.concatenate(([author], followers))
    return _forecast(model, times, weights, seconds, age_seconds, horizon, threshold, "events", "reposts", 0.0)


def forecast_counts(
    counts: Sequence[tuple[float, int]],
    author_followers: float | None,
    age_seconds: float,
    *,
    horizon: timedelta = timedelta(hours=24),
    threshold: float | None = None,
    model: ForecastModel = DEFAULT_MODEL,
    unit: str = "interactions",
) -> Forecast:
    """The forecast from counts at each poll: ``(seconds after posting, count)``, sorted.

    Each rise between two polls is spread evenly over that interval (a first poll's
    count over the time since posting), every reshare with a typical reach
    (``n_star``). A count that went down (deletions) adds nothing until it
    rises past its old high again, and the latest count is what was seen.
    """
    points = sorted((max(float(t), 0.0), int(c)) for t, c in counts if t <= age_seconds)
    pseudo: list[float] = []
    previous_t, high_water = 0.0, 0
    for t, c in points:
        gained = c - high_water
        if gained > 0:
            span = t - previous_t
            pseudo.extend(previous_t + span * (j + 0.5) / gained for j in range(gained))
            high_water = c
        previous_t = t
    observed = points[-1][1] if points else 0
    seconds = np.asarray(pseudo, dtype=float)
    author = model.n_star if author_followers is None else max(float(author_followers), 0.0)
    times = np.concatenate(([0.0], seconds))
    weights = np.concatenate(([author], np.full(len(seconds), model.n_star)))
    result = _forecast(model, times, weights, seconds, age_seconds, horizon, threshold, "counts", unit, COUNTS_SIGMA)
    if observed == len(seconds):
        return result
    # Deletions: the forecast grows from the count seen now, not from the old high.
    shift = observed - len(seconds)
    return _shifted(result, shift)


def _shifted(result: Forecast, shift: int) -> Forecast:
    threshold = result.threshold
    return Forecast(
        expected_final=max(result.expected_final + shift, 0.0),
        low=max(result.low + shift, 0.0),
        high=max(result.high + shift, 0.0),
        p_viral=result.p_viral,
        horizon=result.horizon,
        observed=max(result.observed + shift, 0),
        infectiousness=result.infectiousness,
        branching=result.branching,
        supercritical=result.supercritical,
        method=result.method,
        threshold=threshold,
        unit=result.unit,
        calibrated=result.calibrated,
        signals=result.signals,
    )


def _forecast(
    model: ForecastModel,
    times: np.ndarray,
    weights: np.ndarray,
    reshares: np.ndarray,
    age: float,
    horizon: timedelta,
    threshold: float | None,
    method: Literal["events", "counts"],
    unit: str,
    extra_sigma: float,
) -> Forecast:
    age = max(float(age), 0.0)
    expected, low, high, p_viral, p, rho, supercritical = model.predict(
        times, weights, reshares, age, horizon.total_seconds(), threshold, extra_sigma=extra_sigma
    )
    nothing_yet = len(reshares) == 0 and model.calibration.prior_strength == 0
    signals = None
    if age < horizon.total_seconds():
        signals = Signals(
            plain=expected,
            observed=float(len(reshares)),
            reach_seen=float(np.sum(weights[1:])),
            recent=float(np.sum(reshares > age - RECENT_SECONDS)),
            author_reach=float(weights[0]),
        )
    fitted = model.calibration.nearest(age) if signals is not None else None
    if fitted is not None and signals is not None:
        expected, low, high, p_viral = model.calibration.apply(fitted, signals, threshold)
    return Forecast(
        expected_final=expected,
        low=low,
        high=high,
        p_viral=round(p_viral, 4),
        horizon=horizon,
        observed=len(reshares),
        infectiousness=p,
        branching=rho,
        supercritical=supercritical,
        method="none" if nothing_yet else method,
        threshold=threshold,
        unit=unit,
        calibrated=fitted is not None,
        signals=signals,
    )


def forecast(
    history: Sequence[Reshare] | Sequence[EngagementSnapshot],
    author_followers: int | None,
    source: str,
    now: datetime,
    *,
    posted_at: datetime,
    threshold: float | None = None,
    horizon: timedelta = timedelta(hours=24),
    model: ForecastModel = DEFAULT_MODEL,
) -> Forecast:
    """Forecast a post's reshares (or interactions) at ``posted_at + horizon``.

    Args:
        history: Who reshared and when first seen (:class:`Reshare`, the event-based
            model), or the post's engagement snapshots (the count-based variant).
        author_followers: The author's reach (unknown: a typical resharer's).
        source: The platform; decides what a snapshot counts (reposts where the
            source reports them, else all interactions).
        now: The run's clock; anything stamped later is not seen yet.
        posted_at: When the post was created.
        threshold: The count that makes a post viral for this source and brand
            (``FlagRules.viral_threshold_for``); ``p_viral`` is the chance of reaching it.
        horizon: How long after posting the forecast is for.
        model: Settings and an optional learned calibration.
    """
    age = (now - posted_at).total_seconds()
    if history and isinstance(history[0], Reshare):
        reshares = [r for r in history if isinstance(r, Reshare)]
        return forecast_events(
            [(r.at - posted_at).total_seconds() for r in reshares],
            [r.followers for r in reshares],
            author_followers,
            age,
            horizon=horizon,
            threshold=threshold,
            model=model,
        )
    from models.engagement import count_series  # here: engagement imports nothing of ours but records

    snapshots = [s for s in history if isinstance(s, EngagementSnapshot)]
    shares_known = any(s.shares is not None for s in snapshots) and source in _SHARE_SOURCES
    series = count_series(snapshots, posted_at, now, (lambda s: s.shares or 0) if shares_known else None)
    return forecast_counts(
        series,
        author_followers,
        age,
        horizon=horizon,
        threshold=threshold,
        model=model,
        unit="reposts" if shares_known else "interactions",
    )


def forecast_post(
    post: Post,
    *,
    threshold: float | None,
    horizon: timedelta = timedelta(hours=24),
    model: ForecastModel = DEFAULT_MODEL,
) -> Forecast | None:
    """The forecast for a crawled post, as of its latest observation (``None``: no posting time).

    Uses who reshared (:attr:`Post.reshares`) where the crawler listed them, else the
    engagement snapshots. The clock is the crawl's (the latest snapshot, else
    ``crawled_at``), so re-running the rule on the same data gives the same forecast.
    """
    if post.created_at is None:
        return None
    latest = max((s.at for s in post.engagement_history), default=post.crawled_at)
    observed_at = max(latest, post.crawled_at)
    if post.reshares:
        history: Sequence[Reshare] | Sequence[EngagementSnapshot] = post.reshares
    elif post.engagement_history:
        history = post.engagement_history
    else:
        history = [EngagementSnapshot(at=post.crawled_at, **post.engagement.model_dump(exclude={"upvote_ratio"}))]
    return forecast(
        history,
        post.author.followers,
        post.source,
        observed_at,
        posted_at=post.created_at,
        threshold=threshold,
        horizon=horizon,
        model=model,
    )


#: Sources whose ``shares`` count is a count of reposts (elsewhere: interactions are counted).
_SHARE_SOURCES = frozenset({"mastodon", "bluesky"})


__all__ = [
    "DEFAULT_MODEL",
    "Calibration",
    "Forecast",
    "ForecastModel",
    "Kernel",
    "Signals",
    "forecast",
    "forecast_counts",
    "forecast_events",
    "forecast_post",
]

"""Quantile forecasts of a pool's internal GPU demand: how much the owner may need, and when.

The input is ``y``, the owner's demand in GPUs hour by hour (hour ``i`` covers
``[t0 + 3600 i, t0 + 3600 (i + 1))``, ``t0`` in epoch seconds, UTC). Selling a reserved lease
for the next ``hours`` needs the q-quantile of the *maximum* demand over that window (the owner
must never find its GPUs sold at its busiest hour), so that is what is modelled directly.

Model: a *direct* linear model per horizon ``H`` (hours), fitted once by least squares. For an
origin hour ``t`` the regressors are

* ``1``, ``y[t]`` (demand now) and ``mean(y[t-23 .. t])`` (the last day's mean; fewer hours at
  the very start of the series);
* a seasonal term from the hour-of-week profile ``p`` (below): for the window-max model
  ``max(p)`` over the window's hours ``t+1 .. t+H``, for the value model ``p`` at hour ``t+H``;
* optionally (``fit(trend=True)``) the hour index ``t`` (a linear trend: off by default, see
  below);

and there are two targets per horizon: the window max ``M_H[t] = max(y[t+1 .. t+H])`` and the
value ``V_H[t] = y[t+H]``. The forecast's q-quantile is the fitted mean plus the empirical
q-quantile of that model's in-sample residuals (kept sorted, so any q costs two lookups). The
residuals carry the shape of the demand's surprises: skewed up (bursts) and heavier at long
horizons, which Gaussian intervals would not.

The hour-of-week profile is the mean demand per hour of the week (slot 0 = Monday 00:00 UTC),
shrunk toward coarser means where a slot has few observations: a slot seen ``n`` times is
weighted ``n / (n + SHRINK)`` against the hour-of-day mean, itself weighted the same way
against the overall mean (a soft version of "fall back to hour-of-day, then to the mean").
With one week of history every hour-of-week slot has one sample and the profile is 80 %
hour-of-day; with six weeks it is 60 % hour-of-week. In training, each hour's seasonal
regressor is computed *without that hour* (leave-one-out means); the forecast uses the full
profile. Without this, one week of history makes the profile equal the target (a perfect
in-sample fit, useless out of it), and even with six weeks the in-sample fit trusts the term too
much: on ITP cluster 04 the non-left-out profile raised the 24-h window-max median error from
66.6 to 91.5 GPUs. A window of a week or more holds every slot, so its seasonal term is a
constant and drops out. Where an owner has no cycle the regression gives the term a coefficient
near 0: on ITP clusters 02/04/06/07 held-out pinball loss with and without it is within
0.4 GPUs for most targets (cluster 07's 24-h and 168-h window medians are 3-7 GPUs better
with it, cluster 06's 24-h window median 3.7 worse); on a series with a daily cycle it more than
halves the error (see the tests). ``fit(seasonal=False)`` drops it.

A horizon is fitted only if the history holds at least ``MIN_ORIGINS`` origins for it
(``hours - H``): one week of history fits the horizons up to 72 h, 168 h needs 216 hours and
336 h needs 384. ``DemandForecast.horizons`` lists what was fitted; asking beyond it raises.

Trend: off by default. Measured on ITP clusters 02/04/06/07 (fit on days 2-42, score every
origin of the last 18 days; ``python bench/forecast_itp.py --trend``), a linear time term made
the 24-h window max's q0.9 pinball loss 10.9/64.4/28.6/9.7 GPUs instead of 8.7/35.1/27.7/9.6,
and on cluster 04 it dropped the q0.9 coverage of the 24-h window to 0.53 and of the 168-h window
to 0.28: a trend fitted on six weeks extrapolates their drift into the next two.
``fit(trend=True)`` keeps it measurable.

Why hand-written on numpy rather than statsmodels or statsforecast
(``bench/notes/forecast_libraries.md``, measured on ITP cluster 04): the direct model in its
simplest form (``y[t+k] = a + b·y[t]`` plus residual quantiles) tied statsforecast's AutoARIMA
on pinball loss, covered better at q0.9-0.95 (0.93-0.96, the safe side for selling), fitted in
milliseconds (AutoARIMA 9-12 s per pool per refit) and is a pure function, with asymmetric
quantiles for free. statsmodels would add 307 MB of dependencies (scipy, pandas, patsy...), and
statsforecast 486 MB and a ``pandas<3`` pin; numpy already is a dependency. Fitting all ten
horizons on 1,440 hours takes about 6 ms.

Limits: the residuals are in-sample and, for long windows, heavily overlapping (six weeks hold
about six independent 168-h windows), so long-window quantiles are rough. The fitted mean
reverts toward the training period's level; when the level shifts after the fit, persistence
(demand now + its own residual quantile) does better at 1-4 h (ITP clusters 04 and 07: 1-h
median error 13.5 vs 16.2 and 6.5 vs 9.8 GPUs); refit often.

Queries (``window_max``, ``value``) are O(number of horizons) and read only the last 24 hours of
``recent``; they are meant to be called per lease request.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

HORIZONS: tuple[int, ...] = (1, 2, 4, 8, 12, 24, 48, 72, 168, 336)
"""Hours ahead the models are fitted for (window lengths and leads)."""
MIN_HISTORY_HOURS = 7 * 24
"""``fit`` refuses a shorter history."""
MIN_ORIGINS = 48
"""A horizon ``H`` is fitted only if the history has at least this many origins for it."""
SHRINK = 4.0
"""Pseudo-observations pulling an hour-of-week mean toward the hour-of-day mean (and that one
toward the overall mean)."""
DAY = 24
WEEK = 7 * 24
_MONDAY = 345_600.0  # 1970-01-05T00:00:00Z, the first Monday of the epoch


def hour_of_week(t: float) -> int:
    """The hour of the week of epoch second ``t`` (UTC), 0 = Monday 00:00-01:00."""
    return math.floor((t - _MONDAY) / 3600.0) % WEEK


@dataclass(frozen=True, eq=False)
class DemandForecast:
    """A fitted forecast of one pool's internal demand (build it with ``fit``)."""

    t0: float
    """Epoch seconds of ``y[0]``, the first hour of the history."""
    hours: int
    """Hours of history used."""
    horizons: tuple[int, ...]
    """The fitted horizons, ascending (a subset of ``fit``'s, see ``MIN_ORIGINS``)."""
    profile: FloatArray
    """(168,) Hour-of-week mean demand, shrunk toward hour-of-day; slot 0 = Monday 00:00 UTC."""
    max_coef: FloatArray
    """(len(horizons), p) Window-max model: intercept, y now, last-day mean, seasonal[, trend]."""
    max_season: FloatArray
    """(len(horizons), 168) ``max(profile)`` over a horizon's window, by the window's first slot."""
    max_residuals: tuple[FloatArray, ...]
    """Sorted in-sample residuals of the window-max model, one array per horizon."""
    value_coef: FloatArray
    """(len(horizons), p) Value-at-lead model, same regressors."""
    value_residuals: tuple[FloatArray, ...]
    """Sorted in-sample residuals of the value model, one array per horizon."""
    seasonal: bool = True
    """Whether the models have the hour-of-week term (if not, its coefficients are 0)."""
    trend: bool = False
    """Whether the models have a linear time term (the hour index counted from ``t0``)."""
    _fast: _Tables = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fast", _Tables.of(self))

    @property
    def start_slot(self) -> int:
        """The hour of the week of hour 0."""
        return hour_of_week(self.t0)

    @property
    def max_hours(self) -> int:
        """The longest window (and lead) this forecast answers for."""
        return self.horizons[-1]

    def window_max(self, recent: npt.ArrayLike, origin_hour: int, hours: float, q: float) -> float:
        """The q-quantile of the *maximum* demand over the ``hours`` hours after ``origin_hour``.

        That is hours ``origin_hour + 1 .. origin_hour + ceil(hours)``, given ``recent``, the
        observed series up to and including ``origin_hour`` (``recent[-1]`` is hour
        ``origin_hour``, counted from ``t0``; only the last 24 values are read). Uses the
        smallest fitted horizon ≥ ``ceil(hours)`` and never less than any shorter horizon's
        answer, so it is non-decreasing in ``hours`` (and in ``q``). Raises ``ValueError``
        beyond the largest fitted horizon. Never below 0.
        """
        _check_q(q)
        if not (0.0 < hours < math.inf):
            raise ValueError(f"hours must be positive and finite, got {hours!r}")
        need = math.ceil(hours)
        last = bisect_left(self.horizons, need)
        if last == len(self.horizons):
            raise ValueError(
                f"a {need} h window is beyond the largest fitted horizon ({self.horizons[-1]} h)"
            )
        now, day = _state(recent)
        fast = self._fast
        slot = (fast.start_slot + origin_hour + 1) % WEEK
        best = 0.0
        for k in range(last + 1):
            c = fast.max_coef[k]
            mean = c[0] + c[1] * now + c[2] * day + c[3] * fast.max_season[k][slot]
            if self.trend:
                mean += c[4] * origin_hour
            best = max(best, mean + _quantile(fast.max_residuals[k], q))
        return best

    def value(self, recent: npt.ArrayLike, origin_hour: int, lead: int, q: float) -> float:
        """The q-quantile of demand at hour ``origin_hour + lead`` (``lead`` a fitted horizon).

        ``recent`` as for ``window_max``. Never below 0.
        """
        _check_q(q)
        try:
            k = self.horizons.index(lead)
        except ValueError:
            raise ValueError(f"lead {lead!r} h is not a fitted horizon {self.horizons}") from None
        now, day = _state(recent)
        fast = self._fast
        c = fast.value_coef[k]
        season = fast.profile[(fast.start_slot + origin_hour + lead) % WEEK]
        mean = c[0] + c[1] * now + c[2] * day + c[3] * season
        if self.trend:
            mean += c[4] * origin_hour
        return max(0.0, mean + _quantile(fast.value_residuals[k], q))


@dataclass(frozen=True)
class _Tables:
    """The forecast's arrays as Python lists: a query reads a few scalars, not numpy slices."""

    start_slot: int
    profile: list[float]
    max_coef: list[list[float]]
    max_season: list[list[float]]
    max_residuals: list[list[float]]
    value_coef: list[list[float]]
    value_residuals: list[list[float]]

    @classmethod
    def of(cls, f: DemandForecast) -> _Tables:
        return cls(
            start_slot=f.start_slot,
            profile=f.profile.tolist(),
            max_coef=f.max_coef.tolist(),
            max_season=f.max_season.tolist(),
            max_residuals=[r.tolist() for r in f.max_residuals],
            value_coef=f.value_coef.tolist(),
            value_residuals=[r.tolist() for r in f.value_residuals],
        )


def fit(
    y: npt.ArrayLike,
    t0: float,
    *,
    horizons: Sequence[int] = HORIZONS,
    seasonal: bool = True,
    trend: bool = False,
) -> DemandForecast:
    """Fit the window-max and value models of every horizon the history supports.

    ``y``: hourly demand in GPUs (1-D, finite, ≥ 0, at least ``MIN_HISTORY_HOURS`` long);
    ``t0``: epoch seconds (UTC) of the start of ``y[0]``. Horizons with fewer than
    ``MIN_ORIGINS`` training origins are left out (see ``DemandForecast.horizons``).
    ``seasonal=False`` drops the hour-of-week term, ``trend=True`` adds a linear time term
    (both measured in ``bench/forecast_itp.py``; the defaults are the better ones).
    """
    series = _checked_series(y)
    if not math.isfinite(t0):
        raise ValueError(f"t0 must be finite epoch seconds, got {t0!r}")
    wanted = _checked_horizons(horizons)
    n = len(series)
    fitted = tuple(h for h in wanted if n - h >= MIN_ORIGINS)
    if not fitted:
        raise ValueError(
            f"{n} hours of history fit no horizon of {wanted}: horizon H needs "
            f"H + {MIN_ORIGINS} hours"
        )
    start = hour_of_week(t0)
    slots = (start + np.arange(n)) % WEEK
    profile = _profile(series, slots)
    # Each hour's seasonal regressor, computed without that hour (0: a constant, coefficient 0).
    loo = _profile_left_out(series, slots) if seasonal else np.zeros(n)

    cum = np.concatenate(([0.0], np.cumsum(series)))
    ends = np.arange(1, n + 1)
    begins = np.maximum(ends - DAY, 0)
    day_mean = (cum[ends] - cum[begins]) / (ends - begins)  # mean(y[t-23 .. t]), fewer at start
    tiled = np.tile(profile, 2 + max(fitted) // WEEK)

    windows = np.lib.stride_tricks.sliding_window_view
    max_coef, max_season, max_res, value_coef, value_res = [], [], [], [], []
    for h in fitted:
        m = n - h  # origins 0 .. n-1-h
        base = [series[:m], day_mean[:m]]
        time = [np.arange(m, dtype=np.float64)] if trend else []
        window_max = windows(series[1:], h).max(axis=1)
        season = windows(tiled, h)[:WEEK].max(axis=1) if seasonal else np.zeros(WEEK)
        # A window of a week or more holds every slot: its seasonal max is one constant.
        window_season = windows(loo[1:], h).max(axis=1) if h < WEEK else np.full(m, season[0])
        coef, res = _least_squares([*base, window_season, *time], window_max)
        max_coef.append(coef)
        max_res.append(res)
        coef, res = _least_squares([*base, loo[h:], *time], series[h:])
        value_coef.append(coef)
        value_res.append(res)
        max_season.append(season)
    return DemandForecast(
        t0=float(t0),
        hours=n,
        horizons=fitted,
        profile=profile,
        max_coef=np.array(max_coef),
        max_season=np.array(max_season),
        max_residuals=tuple(max_res),
        value_coef=np.array(value_coef),
        value_residuals=tuple(value_res),
        seasonal=seasonal,
        trend=trend,
    )


def _least_squares(columns: list[FloatArray], target: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``target ~ 1 + columns``: raw coefficients (intercept first) and sorted residuals.

    Columns are standardised for the solve; a constant column gets coefficient 0, so a constant
    series is forecast exactly as its constant.
    """
    x = np.vstack(columns)  # one row per regressor
    mu = x.mean(axis=1)
    sd = x.std(axis=1)
    live = sd > 1e-9 * np.maximum(1.0, np.abs(mu))
    t_mean = float(target.mean())
    b = np.zeros(len(columns))
    if live.any():
        z = (x[live] - mu[live, None]) / sd[live, None]
        b[live] = np.linalg.lstsq(z.T, target - t_mean, rcond=None)[0] / sd[live]
    coef = np.concatenate(([t_mean - float(b @ mu)], b))
    residuals = target - (coef[0] + b @ x)
    residuals.sort()
    return coef, residuals


def _profile(y: FloatArray, slots: npt.NDArray[np.int_]) -> FloatArray:
    """(168,) hour-of-week means shrunk toward hour-of-day means, shrunk toward the mean."""
    week_sum, week_n = _sums(y, slots, WEEK)
    day_sum, day_n = _sums(y, slots % DAY, DAY)
    day = (day_sum + SHRINK * y.mean()) / (day_n + SHRINK)
    result: FloatArray = (week_sum + SHRINK * day[np.arange(WEEK) % DAY]) / (week_n + SHRINK)
    return result


def _profile_left_out(y: FloatArray, slots: npt.NDArray[np.int_]) -> FloatArray:
    """(n,) ``_profile`` at each hour's slot, computed without that hour."""
    week_sum, week_n = _sums(y, slots, WEEK)
    day_sum, day_n = _sums(y, slots % DAY, DAY)
    n = len(y)
    overall = (y.sum() - y) / (n - 1)
    hod = slots % DAY
    day = (day_sum[hod] - y + SHRINK * overall) / (day_n[hod] - 1 + SHRINK)
    result: FloatArray = (week_sum[slots] - y + SHRINK * day) / (week_n[slots] - 1 + SHRINK)
    return result


def _sums(y: FloatArray, keys: npt.NDArray[np.int_], size: int) -> tuple[FloatArray, FloatArray]:
    total = np.bincount(keys, weights=y, minlength=size).astype(np.float64)
    count = np.bincount(keys, minlength=size).astype(np.float64)
    return total, count


def _checked_series(y: npt.ArrayLike) -> FloatArray:
    try:
        series = np.array(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be a 1-D array of hourly demand in GPUs: {exc}") from None
    if series.ndim != 1:
        raise ValueError(f"y must be 1-D (one value per hour), got shape {series.shape}")
    if len(series) < MIN_HISTORY_HOURS:
        raise ValueError(
            f"need at least {MIN_HISTORY_HOURS} hours (one week) of history, got {len(series)}"
        )
    bad = ~np.isfinite(series)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"y must be finite: y[{i}] is {series[i]}")
    if (series < 0).any():
        i = int(np.argmax(series < 0))
        raise ValueError(f"y must be non-negative (GPUs): y[{i}] is {series[i]}")
    return series


def _checked_horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    if not horizons or any(
        not isinstance(h, int | np.integer) or isinstance(h, bool) or h < 1 for h in horizons
    ):
        raise ValueError(f"horizons must be positive integers (hours), got {horizons!r}")
    return tuple(sorted({int(h) for h in horizons}))


def _check_q(q: float) -> None:
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")


def _state(recent: npt.ArrayLike) -> tuple[float, float]:
    """Demand now and the last day's mean, from the tail of ``recent``."""
    tail = np.asarray(recent, dtype=np.float64)
    if tail.ndim != 1 or len(tail) == 0:
        raise ValueError("recent must be a non-empty 1-D array ending at the origin hour")
    values = tail[-DAY:].tolist()
    total = math.fsum(values)
    if not math.isfinite(total) or min(values) < 0:
        raise ValueError("recent's last 24 hours must be finite and non-negative")
    return values[-1], total / len(values)


def _quantile(sorted_values: list[float], q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) of an ascending list, in O(1)."""
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])

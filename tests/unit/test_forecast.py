"""Demand forecast: calibrated window maxima on a known pattern, exact on a constant, monotone,
never negative, and strict about its input."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from backfill.domain import forecast
from backfill.domain.forecast import HORIZONS, MIN_HISTORY_HOURS, fit, hour_of_week

MONDAY = datetime(2021, 3, 1, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
WEEK = 168
QS = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def daily_pattern(seed: int, weeks: int, noise: float = 6.0) -> np.ndarray:
    """100 GPUs ± 30 over the day, 20 fewer at weekends, plus AR(1) noise (φ = 0.7)."""
    rng = np.random.default_rng(seed)
    hours = np.arange(weeks * WEEK)
    shocks = rng.normal(0.0, noise, len(hours))
    ar = np.zeros(len(hours))
    for i in range(1, len(hours)):
        ar[i] = 0.7 * ar[i - 1] + shocks[i]
    weekend = (hours // 24) % 7 >= 5
    demand: np.ndarray = np.maximum(
        0.0, 100 + 30 * np.sin(2 * np.pi * hours / 24) - 20 * weekend + ar
    )
    return demand


def held_out(
    model: forecast.DemandForecast, y: np.ndarray, train: int, kind: str, h: int, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and q-forecasts for every origin after the training hours."""
    origins = range(train, len(y) - h)
    if kind == "max":
        outcome = [y[o + 1 : o + 1 + h].max() for o in origins]
        fc = [model.window_max(y[: o + 1], o, h, q) for o in origins]
    else:
        outcome = [y[o + h] for o in origins]
        fc = [model.value(y[: o + 1], o, h, q) for o in origins]
    return np.array(outcome), np.array(fc)


def pinball(outcome: np.ndarray, fc: np.ndarray, q: float) -> float:
    d = outcome - fc
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


@pytest.fixture(scope="module")
def pattern() -> tuple[np.ndarray, forecast.DemandForecast]:
    y = daily_pattern(seed=0, weeks=14)
    return y, fit(y[: 6 * WEEK], MONDAY)


# --- calibration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "low", "high"), [(1, 0.85, 0.95), (4, 0.85, 0.95), (24, 0.8, 0.97)]
)
def test_q90_window_max_covers_about_90_percent_of_held_out_windows(
    pattern: tuple[np.ndarray, forecast.DemandForecast], hours: int, low: float, high: float
) -> None:
    y, model = pattern
    outcome, fc = held_out(model, y, 6 * WEEK, "max", hours, 0.9)
    assert low <= np.mean(outcome <= fc) <= high


def test_median_value_is_unbiased_on_held_out_hours(
    pattern: tuple[np.ndarray, forecast.DemandForecast],
) -> None:
    y, model = pattern
    outcome, fc = held_out(model, y, 6 * WEEK, "value", 8, 0.5)
    assert 0.4 <= np.mean(outcome <= fc) <= 0.6


def test_seasonal_term_carries_a_daily_cycle(
    pattern: tuple[np.ndarray, forecast.DemandForecast],
) -> None:
    y, model = pattern
    flat = fit(y[: 6 * WEEK], MONDAY, seasonal=False)
    for kind, h, q in (("value", 8, 0.5), ("max", 4, 0.9)):
        with_season = pinball(*held_out(model, y, 6 * WEEK, kind, h, q), q)
        without = pinball(*held_out(flat, y, 6 * WEEK, kind, h, q), q)
        assert with_season < 0.7 * without, (kind, h, with_season, without)
    assert model.value_coef[HORIZONS.index(8), 3] == pytest.approx(1.0, abs=0.3)
    assert np.all(flat.value_coef[:, 3] == 0.0)


def test_profile_follows_the_cycle_and_weekends(
    pattern: tuple[np.ndarray, forecast.DemandForecast],
) -> None:
    _, model = pattern
    # Monday 06:00 is the daily peak (sin = 1), 18:00 the trough; Saturday 06:00 is 20 lower.
    assert model.profile[6] == pytest.approx(130, abs=8)
    assert model.profile[18] == pytest.approx(70, abs=8)
    assert model.profile[5 * 24 + 6] < model.profile[6] - 8


def test_one_week_of_noise_does_not_fit_itself_through_the_profile() -> None:
    # With one week every hour-of-week slot has one sample: a profile that kept the hour
    # itself would equal the target, and the residuals would all be 0.
    y = np.random.default_rng(1).normal(50.0, 5.0, MIN_HISTORY_HOURS)
    model = fit(y, MONDAY)
    assert model.horizons == (1, 2, 4, 8, 12, 24, 48, 72)
    for residuals in model.value_residuals:
        assert np.std(residuals) > 4.0


# --- exactness and shape ---------------------------------------------------------------------


@pytest.mark.parametrize("level", [0.0, 7.0, 512.0])
def test_constant_series_is_forecast_as_its_constant(level: float) -> None:
    model = fit(np.full(3 * WEEK, level), MONDAY)
    recent = np.full(30, level)
    for q in QS:
        for h in model.horizons:
            assert model.window_max(recent, 3 * WEEK - 1, h, q) == pytest.approx(level, abs=1e-9)
            assert model.value(recent, 3 * WEEK - 1, h, q) == pytest.approx(level, abs=1e-9)


def test_window_max_is_monotone_in_hours_and_q() -> None:
    rng = np.random.default_rng(2)
    y = np.maximum(
        0.0, daily_pattern(3, 4) + rng.gamma(1.0, 15.0, 4 * WEEK) * (rng.random(4 * WEEK) < 0.1)
    )
    model = fit(y, MONDAY)
    grid = [0.25, 1, 1.5, 2, 3, 4, 5, 8, 11, 12, 13, 24, 30, 48, 72, 100, 168, 200, 336]
    for origin in (100, 400, 671):
        recent = y[: origin + 1]
        table = np.array([[model.window_max(recent, origin, h, q) for h in grid] for q in QS])
        assert np.all(np.diff(table, axis=1) >= 0), "non-decreasing in hours"
        assert np.all(np.diff(table, axis=0) >= 0), "non-decreasing in q"


def test_window_uses_the_smallest_horizon_at_least_as_long() -> None:
    y = daily_pattern(4, 3)
    model = fit(y, MONDAY)
    recent, origin = y[:300], 299
    assert model.window_max(recent, origin, 4.5, 0.9) == model.window_max(recent, origin, 8, 0.9)
    assert model.window_max(recent, origin, 0.5, 0.9) == model.window_max(recent, origin, 1, 0.9)
    # A one-hour window's maximum is the next hour's value: the same model.
    for q in QS:
        assert model.window_max(recent, origin, 1, q) == pytest.approx(
            model.value(recent, origin, 1, q), abs=1e-9
        )


def test_quantiles_are_the_residuals_empirical_quantiles() -> None:
    y = daily_pattern(5, 4) + 200.0  # far from 0: no clipping
    model = fit(y, MONDAY)
    k = model.horizons.index(24)
    recent, origin = y[:500], 499
    base = model.value(recent, origin, 24, 0.5)
    for q in QS:
        step = np.quantile(model.value_residuals[k], q) - np.quantile(model.value_residuals[k], 0.5)
        assert model.value(recent, origin, 24, q) - base == pytest.approx(step, abs=1e-9)
    assert np.all(np.diff(model.value_residuals[k]) >= 0)


def test_forecasts_are_never_negative() -> None:
    # Mostly idle with bursts: the low quantiles of a linear model fall below 0 and are clipped.
    rng = np.random.default_rng(6)
    y = np.where(rng.random(4 * WEEK) < 0.15, rng.gamma(2.0, 40.0, 4 * WEEK), 0.0)
    model = fit(y, MONDAY)
    values = [
        f(y[: o + 1], o, h, q)
        for o in range(24, 4 * WEEK, 37)
        for h in model.horizons
        for q in QS
        for f in (model.window_max, model.value)
    ]
    assert min(values) == 0.0  # clipping did happen ...
    assert all(v >= 0.0 for v in values)  # ... and nothing got below it


def test_only_the_last_day_of_recent_matters() -> None:
    y = daily_pattern(7, 3)
    model = fit(y, MONDAY)
    recent = y[:400].copy()
    before = model.window_max(recent, 399, 24, 0.9)
    recent[:-24] = 1e6
    assert model.window_max(recent, 399, 24, 0.9) == before
    assert model.window_max(recent[-24:], 399, 24, 0.9) == before
    recent[-1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.window_max(recent, 399, 24, 0.9)


def test_hour_of_week_counts_from_monday_midnight_utc() -> None:
    assert hour_of_week(MONDAY) == 0
    assert hour_of_week(MONDAY + 3599) == 0
    assert hour_of_week(MONDAY - 1) == 167  # Sunday 23:59:59
    assert hour_of_week(1_614_816_000.0) == 72  # 2021-03-04T00:00Z, a Thursday: the ITP start
    assert fit(np.ones(WEEK), 1_614_816_000.0).start_slot == 72


def test_a_linear_ramp_is_extrapolated_with_or_without_the_trend_term() -> None:
    y = 10.0 + 0.5 * np.arange(4 * WEEK)
    for trend in (False, True):
        model = fit(y, MONDAY, trend=trend)
        assert model.value(y, len(y) - 1, 24, 0.5) == pytest.approx(y[-1] + 12.0, abs=1e-6)
        assert model.window_max(y, len(y) - 1, 24, 0.5) == pytest.approx(y[-1] + 12.0, abs=1e-6)


# --- limits and errors ----------------------------------------------------------------------


def test_beyond_the_largest_horizon_raises() -> None:
    y = daily_pattern(8, 4)
    model = fit(y, MONDAY)
    assert model.max_hours == 336
    assert model.window_max(y, len(y) - 1, 336, 0.9) > 0
    with pytest.raises(ValueError, match="beyond the largest fitted horizon"):
        model.window_max(y, len(y) - 1, 336.5, 0.9)
    short = fit(y[:MIN_HISTORY_HOURS], MONDAY)  # one week: horizons up to 72 h
    assert short.max_hours == 72
    with pytest.raises(ValueError, match=r"beyond the largest fitted horizon \(72 h\)"):
        short.window_max(y, MIN_HISTORY_HOURS - 1, 73, 0.9)


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_q_outside_the_open_unit_interval_raises(q: float) -> None:
    model = fit(np.ones(WEEK), MONDAY)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        model.window_max(np.ones(3), 2, 4, q)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        model.value(np.ones(3), 2, 4, q)


def test_bad_queries_raise() -> None:
    model = fit(np.ones(WEEK), MONDAY)
    with pytest.raises(ValueError, match="not a fitted horizon"):
        model.value(np.ones(3), 2, 3, 0.5)
    for hours in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="hours must be positive"):
            model.window_max(np.ones(3), 2, hours, 0.5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        model.window_max(np.array([]), 2, 4, 0.5)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.ones(MIN_HISTORY_HOURS - 1), r"at least 168 hours \(one week\) of history, got 167"),
        (np.r_[np.ones(200), np.nan], r"finite: y\[200\] is nan"),
        (np.r_[np.ones(200), np.inf], r"finite: y\[200\] is inf"),
        (np.r_[np.ones(50), -1.0, np.ones(200)], r"non-negative \(GPUs\): y\[50\] is -1.0"),
        (np.ones((200, 2)), r"1-D \(one value per hour\), got shape \(200, 2\)"),
        (np.ones((2, 200)), r"1-D"),
    ],
)
def test_fit_rejects_bad_series(y: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit(y, MONDAY)


def test_fit_rejects_bad_horizons_and_t0() -> None:
    y = np.ones(WEEK)
    for horizons in ((), (0, 1), (1.5,), (True,)):
        with pytest.raises(ValueError, match="horizons must be positive integers"):
            fit(y, MONDAY, horizons=horizons)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fit no horizon"):
        fit(y, MONDAY, horizons=(168,))
    with pytest.raises(ValueError, match="t0 must be finite"):
        fit(y, float("nan"))


def test_fit_is_fast_enough_to_refit_per_pool() -> None:
    y = daily_pattern(9, 9)[:1440]
    took = []
    for _ in range(5):
        started = time.perf_counter()
        fit(y, MONDAY)
        took.append(time.perf_counter() - started)
    assert min(took) < 0.05  # seconds; about 6 ms on the dev machine

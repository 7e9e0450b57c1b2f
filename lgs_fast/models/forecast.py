"""Weekly net revenue forecast with prediction intervals, chosen by a rolling-origin backtest.

Input: the `weekly_sales` table of either engine, of which only the complete weeks are used
(DESIGN.md "weekly sales and forecast"): a partial first or last week would read as a collapse.

Candidates (`METHODS`): the naive forecast (the last complete week repeated), the mean of the
last 4 weeks, exponential smoothing (ETS with additive errors and no trend, an additive trend or
a damped one, `CANDIDATES`, the smallest AICc of the three fitted by maximum likelihood with
statsmodels' `ETSModel`), the Theta method, and the mean of those four. Errors are additive
because a week can hold nothing (the shop closes over Christmas) or net to less than nothing.
There is no seasonal term because the only season weekly gift-ware sales have is the year, and
the shipped data holds one.

Theta is the dynamic standard Theta model of Fiorucci et al. (2016, "Models for optimising the
theta method and their relationship to state space models"), the family statsforecast's
AutoTheta chooses from: half a smoothed level, half the least-squares trend line through the
weeks so far, re-estimated every week. It is written here in numpy (about 40 lines) rather than
taken from statsforecast, whose numba compilation would add seconds and a large dependency to
every run; statsmodels' `ThetaModel` fits the static line once, and on the shipped data's
backtest it did no better than naive (MASE 1.545 against 1.580; the dynamic model: 1.386). The
optimised-θ variants were tried and not kept: the extra parameter overfits one year of weeks
(MASE 1.43 and 1.45).

Backtest: rolling origin. Every week that leaves at least `MIN_TRAINING` weeks before it and
the whole horizon after it is an origin; every candidate is fitted again on the weeks up to the
origin and forecasts the next weeks. Errors: MASE (absolute error over the mean absolute
one-week change in that origin's training weeks, the in-sample error of the naive forecast) and
sMAPE (in percent, 200 |y − ŷ| / (|y| + |ŷ|)). The published forecast is the candidate with the
lowest MASE over all origins and horizons (the simpler on a tie), not the one a likelihood
prefers: on the shipped data AICc picks ETS, which forecasts worse than naive. Its intervals are
the model's own where it has them (ETS and Theta in closed form), else the backtest's errors at each
horizon (their 2.5, 10, 90 and 97.5% quantiles around the forecast). With too few weeks for a
backtest, the ETS candidate with the lowest AICc is published and the models table says why.

statsmodels (and the pandas it needs) is imported inside the functions that fit, so that
`import lgs_fast` stays light. The fits run with one BLAS thread (`lgs_fast.models.threads`):
statsmodels' optimiser (scipy's L-BFGS-B) makes many tiny BLAS calls, and with a thread per
core they spent more time waking threads than computing (measured on 2 busy cores: 5.7 s
against 0.4 s for the real data's backtest).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final

import numpy as np
import polars as pl
from numpy.typing import NDArray

from lgs_fast.errors import InputError
from lgs_fast.models.threads import one_blas_thread

Array = NDArray[np.float64]

HORIZON: Final = 12
# Fewer complete weeks than a quarter: a trend could not be told from a few noisy weeks.
MIN_WEEKS: Final = 13
# Each backtest origin is fitted on at least half a year of weeks.
MIN_TRAINING: Final = 26
LEVELS: Final = (80, 95)
# The candidates, in order of complexity (the first wins an exact tie in AICc).
CANDIDATES: Final[dict[str, dict[str, Any]]] = {
    "ETS(A,N,N)": {"trend": None, "damped_trend": False},
    "ETS(A,A,N)": {"trend": "add", "damped_trend": False},
    "ETS(A,Ad,N)": {"trend": "add", "damped_trend": True},
}
NAIVE: Final = "naive"
MEAN_4: Final = "mean of last 4 weeks"
ETS: Final = "ETS"
THETA: Final = "Theta"
# The standard Theta model's θ: half the weight on the trend line, half on the smoothed level.
THETA_COEFFICIENT: Final = 2.0
THETA_ALPHA: Final = (0.01, 0.99)  # the smoothing weight's range
COMBINATION: Final = "mean of the four"
# The backtest's candidates, simplest first (the first wins an exact tie in MASE).
METHODS: Final = (NAIVE, MEAN_4, ETS, THETA, COMBINATION)
_PARAMETERS: Final = {"smoothing_level": "alpha", "smoothing_trend": "beta", "damping_trend": "phi"}

FORECAST_SCHEMA: Final = {
    "week": pl.Date, "kind": pl.String, "net_revenue": pl.Float64,
    "lo_80": pl.Float64, "hi_80": pl.Float64, "lo_95": pl.Float64, "hi_95": pl.Float64,
    "model": pl.String,
}  # fmt: skip
BACKTEST_SCHEMA: Final = {
    "method": pl.String, "horizon": pl.Int32, "origins": pl.Int64,
    "first_origin": pl.Date, "last_origin": pl.Date,
    "mase": pl.Float64, "smape": pl.Float64, "mae": pl.Float64,
    "beats_naive": pl.Int64, "chosen": pl.Boolean, "models": pl.String,
}  # fmt: skip
MODELS_SCHEMA: Final = {
    "model": pl.String, "chosen": pl.Boolean, "aicc": pl.Float64,
    "alpha": pl.Float64, "beta": pl.Float64, "phi": pl.Float64, "sigma": pl.Float64,
    "weeks": pl.Int64, "first_week": pl.Date, "last_week": pl.Date, "note": pl.String,
}  # fmt: skip


@dataclass(frozen=True)
class _Fit:
    """One candidate fitted to one series: its AICc, smoothing parameters and residual
    standard deviation (in pounds), and the statsmodels result (on the scaled series)."""

    model: str
    aicc: float
    parameters: dict[str, float]
    sigma: float
    scale: float
    result: Any


def _fit(y: Array, model: str) -> _Fit | None:
    """`model` fitted to `y`, or None when the optimiser does not converge.

    The series is divided by its mean absolute value first: statsmodels' optimiser is not
    scale-free, and on pounds (about 10^5 a week) it leaves the initial level where it
    started, short of the maximum likelihood. The AICc is given back in pounds: dividing by
    the scale adds n·log(scale) to the log-likelihood, the same for every candidate.
    """
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    scale = float(np.mean(np.abs(y))) or 1.0
    with warnings.catch_warnings():
        # A failure to converge is read from mle_retvals below, not from a warning.
        warnings.simplefilter("ignore")
        try:
            # A pandas Series, not an array: statsmodels' prediction intervals read its index.
            result = ETSModel(
                pd.Series(y / scale), error="add", seasonal=None, **CANDIDATES[model]
            ).fit(disp=False)
        except (ValueError, np.linalg.LinAlgError):
            return None
    if not result.mle_retvals.get("converged", False) or not math.isfinite(result.aicc):
        return None
    named = dict(zip(result.param_names, np.asarray(result.params, dtype=float), strict=True))
    parameters = {short: named[name] for name, short in _PARAMETERS.items() if name in named}
    aicc = float(result.aicc) + 2 * len(y) * math.log(scale)
    return _Fit(model, aicc, parameters, math.sqrt(result.mse) * scale, scale, result)


def _candidates(y: Array) -> dict[str, _Fit | None]:
    return {model: _fit(y, model) for model in CANDIDATES}


def _best(fits: dict[str, _Fit | None]) -> _Fit | None:
    usable = [f for f in fits.values() if f is not None]
    return min(usable, key=lambda f: f.aicc) if usable else None


def _predict(fit: _Fit, n: int, horizon: int) -> dict[str, Array]:
    """Point forecasts and the model's prediction intervals for the `horizon` weeks after the
    `n` fitted ones, in pounds."""
    prediction = fit.result.get_prediction(start=n, end=n + horizon - 1, method="exact")
    out = {"mean": np.asarray(prediction.predicted_mean, dtype=float) * fit.scale}
    for level in LEVELS:
        frame = prediction.summary_frame(alpha=1 - level / 100)
        out[f"lo_{level}"] = frame["pi_lower"].to_numpy(dtype=float) * fit.scale
        out[f"hi_{level}"] = frame["pi_upper"].to_numpy(dtype=float) * fit.scale
    return out


def _complete_weeks(weekly: pl.DataFrame) -> pl.DataFrame:
    weeks = weekly.filter(pl.col("complete")).select("week", "net_revenue").sort("week")
    steps = weeks["week"].diff().drop_nulls()
    if (steps != dt.timedelta(days=7)).any():
        raise InputError("weekly_sales: the complete weeks are not consecutive weeks")
    return weeks


def _smape(actual: Array, forecast: Array) -> Array:
    """200 |y − ŷ| / (|y| + |ŷ|) per forecast, in percent; 0 where both are 0 (exactly right)."""
    denominator = np.abs(actual) + np.abs(forecast)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, 200 * np.abs(actual - forecast) / safe, 0.0)


def theta_one_step(y: Array, alpha: float, level0: float) -> tuple[Array, float, float, float]:
    """One pass of the dynamic standard Theta model over `y` (θ = 2): the one-step forecasts,
    the last level, and the intercept and slope of the least-squares line through all of `y`.

    The level is simple exponential smoothing; the trend is the least-squares line through the
    weeks seen so far, estimated again every week (A_t, B_t), so that an early slope is not
    carried to the end of the year. One-step forecast (Fiorucci et al. 2016, eq. 8):
    μ_t = ℓ_{t−1} + (1 − 1/θ)((1 − α)^{t−1} A_{t−1} + (1 − (1 − α)^t)/α · B_{t−1}).
    """
    n = len(y)
    t = np.arange(1, n + 1, dtype=float)
    mean = np.cumsum(y) / t
    # Least squares of y on 1..k for every k, from running sums; a single week has no slope.
    spread = t * (t * t - 1) / 12
    covariance = np.cumsum(t * y) - t * (t + 1) / 2 * mean
    slope = np.divide(covariance, spread, out=np.zeros(n), where=spread > 0)
    intercept = mean - (t + 1) / 2 * slope
    previous_intercept = np.concatenate(([y[0]], intercept[:-1]))
    previous_slope = np.concatenate(([0.0], slope[:-1]))
    # ℓ_t = α y_t + (1 − α) ℓ_{t−1}, from ℓ_0 = level0.
    decay = (1 - alpha) ** np.arange(n + 1, dtype=float)
    levels = np.empty(n + 1)
    levels[0] = level0
    for i in range(n):
        levels[i + 1] = alpha * y[i] + (1 - alpha) * levels[i]
    trend = decay[:-1] * previous_intercept + (1 - decay[1:]) / alpha * previous_slope
    return levels[:-1] + (1 - 1 / THETA_COEFFICIENT) * trend, levels[-1], intercept[-1], slope[-1]


@dataclass(frozen=True)
class ThetaFit:
    alpha: float  # the level's smoothing weight
    level0: float  # the level before the first week
    mse: float  # the mean squared one-step error


def theta_parameters(y: Array) -> ThetaFit:
    """The dynamic standard Theta model's α and ℓ_0 fitted to `y` by least squares of its
    one-step errors (in the units of `y`)."""
    from scipy.optimize import minimize_scalar

    def fitted(alpha: float) -> ThetaFit:
        # The one-step forecasts are affine in ℓ_0, with weight (1 − α)^{t−1}: for a given α
        # the best ℓ_0 is a one-variable least-squares solution.
        forecasts = theta_one_step(y, alpha, 0.0)[0]
        weight = (1 - alpha) ** np.arange(len(y), dtype=float)
        level0 = float(weight @ (y - forecasts) / (weight @ weight))
        return ThetaFit(alpha, level0, float(np.mean((y - forecasts - level0 * weight) ** 2)))

    # The error is not convex in α (on the shipped weeks a local search from 0.5 ends on the
    # wrong bound): a grid finds the best valley, a bounded search refines it.
    grid = np.linspace(THETA_ALPHA[0], THETA_ALPHA[1], 50)
    best = int(np.argmin([fitted(a).mse for a in grid]))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    return fitted(
        float(minimize_scalar(lambda a: fitted(a).mse, bounds=(low, high), method="bounded").x)
    )


def _theta(y: Array, horizon: int) -> dict[str, Array] | None:
    """The dynamic standard Theta model's forecasts and intervals for the `horizon` weeks after
    `y`, in pounds; None when it cannot be fitted.

    ŷ_{n+h} = ℓ_n + (1 − 1/θ)((1 − α)^n A_n + (h − 1 + (1 − (1 − α)^{n+1})/α) B_n).
    """
    if len(y) < 3:
        return None
    scale = float(np.mean(np.abs(y))) or 1.0
    z = y / scale
    fit = theta_parameters(z)
    alpha = fit.alpha
    _, level, intercept, slope = theta_one_step(z, alpha, fit.level0)
    steps = np.arange(1, horizon + 1, dtype=float)
    n = len(z)
    drift = (1 - alpha) ** n * intercept + (
        steps - 1 + (1 - (1 - alpha) ** (n + 1)) / alpha
    ) * slope
    mean = (level + (1 - 1 / THETA_COEFFICIENT) * drift) * scale
    if not np.all(np.isfinite(mean)):
        return None
    # The model's intervals are those of simple exponential smoothing with drift (Hyndman and
    # Billah 2003): the one-step error's variance grows by α² for each further week.
    sigma = math.sqrt(fit.mse) * scale * np.sqrt(1 + (steps - 1) * alpha**2)
    out = {"mean": mean}
    for level_percent in LEVELS:
        z_score = NormalDist().inv_cdf(0.5 + level_percent / 200)
        out[f"lo_{level_percent}"] = mean - z_score * sigma
        out[f"hi_{level_percent}"] = mean + z_score * sigma
    return out


def _forecasts(
    y: Array, horizon: int
) -> tuple[dict[str, dict[str, Array]], dict[str, _Fit | None]]:
    """Every candidate's forecasts for the `horizon` weeks after `y` (with the model's intervals
    where it has them; a candidate that cannot be fitted is left out), and the ETS fits."""
    out: dict[str, dict[str, Array]] = {
        NAIVE: {"mean": np.full(horizon, y[-1])},
        MEAN_4: {"mean": np.full(horizon, float(np.mean(y[-4:])))},
    }
    fits = _candidates(y)
    best = _best(fits)
    if best is not None:
        out[ETS] = _predict(best, len(y), horizon)
    theta = _theta(y, horizon)
    if theta is not None:
        out[THETA] = theta
    if ETS in out and THETA in out:
        out[COMBINATION] = {"mean": np.mean([out[m]["mean"] for m in METHODS[:4]], axis=0)}
    return out, fits


@dataclass(frozen=True)
class _Backtest:
    table: pl.DataFrame
    errors: dict[str, Array]  # per method: actual − forecast, origins × horizons (NaN: not fitted)
    chosen: str | None


def backtest(
    y: Sequence[float] | Array,
    weeks: Sequence[dt.date],
    horizon: int = HORIZON,
    min_training: int = MIN_TRAINING,
) -> pl.DataFrame:
    """`forecast_backtest`: every candidate of `METHODS`, fitted again at each origin, scored by
    rolling origin on the weekly series `y` (one value per week of `weeks`).

    Origins are the weeks that leave at least `min_training` weeks up to them and h weeks after
    them, h = min(horizon, weeks left after `min_training`): every origin scores the same
    horizons. One row per method and horizon, after a row per method over all horizons
    (`horizon` null); `origins` is how many origins each mean is over, `first_origin` and
    `last_origin` the last training week of the first and last; `beats_naive`, in how many
    origins the method's mean MASE was below the naive forecast's; `chosen`, the method with the
    lowest overall MASE (its rows); `models`, for ETS, which candidate each origin chose. An
    origin whose training weeks never change has no MASE scale: its MASE is left out of the
    means. Empty when no week is left to score.
    """
    return _run_backtest(np.asarray(y, dtype=float), weeks, horizon, min_training).table


def _run_backtest(
    values: Array, weeks: Sequence[dt.date], horizon: int, min_training: int
) -> _Backtest:
    n = len(values)
    h = min(horizon, n - min_training)
    if h < 1:
        return _Backtest(pl.DataFrame(schema=BACKTEST_SCHEMA), {}, None)
    origins = range(min_training, n - h + 1)  # number of training weeks at each origin
    signed = {m: np.full((len(origins), h), np.nan) for m in METHODS}
    scaled = {m: np.full((len(origins), h), np.nan) for m in METHODS}
    smape = {m: np.full((len(origins), h), np.nan) for m in METHODS}
    used: Counter[str] = Counter()
    with one_blas_thread():
        for i, o in enumerate(origins):
            train, actual = values[:o], values[o : o + h]
            scale = float(np.mean(np.abs(np.diff(train))))
            forecasts, fits = _forecasts(train, h)
            best = _best(fits)
            used[best.model if best is not None else "none"] += 1
            for method, forecast in forecasts.items():
                signed[method][i] = actual - forecast["mean"]
                if scale > 0:
                    scaled[method][i] = np.abs(signed[method][i]) / scale
                smape[method][i] = _smape(actual, forecast["mean"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means: no value
        per_origin = {m: np.nanmean(scaled[m], axis=1) for m in METHODS}
        overall = {m: float(np.nanmean(scaled[m])) for m in METHODS}
    scored = [m for m in METHODS if math.isfinite(overall[m])]
    chosen = min(scored, key=lambda m: overall[m]) if scored else None
    models = {
        ETS: ", ".join(f"{name} ×{count}" for name, count in used.most_common()),
        NAIVE: "last week repeated",
        MEAN_4: "mean of the last 4 weeks repeated",
        THETA: "dynamic standard Theta: smoothed level plus half the trend line, re-estimated weekly",
        COMBINATION: "mean of naive, the 4-week mean, ETS and Theta",
    }
    rows = []
    for method in METHODS:
        e, q, s = np.abs(signed[method]), scaled[method], smape[method]
        beats = int(np.sum(per_origin[method] < per_origin[NAIVE]))
        for horizon_of_row, columns in [(None, slice(None)), *((k + 1, k) for k in range(h))]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mase = float(np.nanmean(q[:, columns]))
                smape_mean = float(np.nanmean(s[:, columns]))
                mae = float(np.nanmean(e[:, columns]))
            rows.append(
                {
                    "method": method, "horizon": horizon_of_row, "origins": len(origins),
                    "first_origin": weeks[origins[0] - 1], "last_origin": weeks[origins[-1] - 1],
                    "mase": mase, "smape": smape_mean, "mae": mae,
                    "beats_naive": None if method == NAIVE else beats,
                    "chosen": method == chosen, "models": models[method],
                }
            )  # fmt: skip
    table = pl.DataFrame(rows, schema=BACKTEST_SCHEMA).with_columns(
        pl.col("mase", "smape", "mae").fill_nan(None)
    )
    return _Backtest(table, signed, chosen)


def _error_intervals(point: Array, errors: Array) -> dict[str, Array]:
    """Intervals around `point` from the backtest's errors (actual − forecast) at each horizon:
    their 10-90% and 2.5-97.5% quantiles, linearly interpolated."""
    out: dict[str, Array] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for level in LEVELS:
            tail = (100 - level) / 2
            out[f"lo_{level}"] = point + np.nanpercentile(errors, tail, axis=0)
            out[f"hi_{level}"] = point + np.nanpercentile(errors, 100 - tail, axis=0)
    return out


def _models_table(
    fits: dict[str, _Fit | None],
    best: _Fit | None,
    weeks: pl.Series,
    note: str | None,
    published: str | None,
) -> pl.DataFrame:
    """`forecast_models`: the ETS candidates fitted to every complete week; `chosen` marks the
    one the forecast uses, when the published forecast is ETS."""
    first, last = (weeks.min(), weeks.max()) if len(weeks) else (None, None)
    common = {"weeks": len(weeks), "first_week": first, "last_week": last}
    lowest = best.aicc if best is not None else math.nan
    rows = []
    for model, f in fits.items():
        if f is None:
            rows.append(
                {"model": model, "chosen": False, **common, "note": "did not converge: not used"}
            )
            continue
        is_best = f is best
        if not is_best:
            text = f"AICc {f.aicc - lowest:.1f} above the lowest"
        elif published == ETS:
            text = "lowest AICc of the ETS models: the forecast's model"
        else:
            text = f"lowest AICc of the ETS models; the forecast is {published}, which did better in the backtest"
        if is_best and note:
            text = f"{text}; {note}"
        rows.append(
            {
                "model": model, "chosen": is_best and published == ETS, "aicc": f.aicc,
                **f.parameters, "sigma": f.sigma, **common, "note": text,
            }
        )  # fmt: skip
    if best is None:
        reason = "no candidate model converged" if fits else note
        rows.append({"model": "none", "chosen": False, **common, "note": reason})
    return pl.DataFrame(rows, schema=MODELS_SCHEMA)


def sales_forecast(weekly: pl.DataFrame, horizon: int = HORIZON) -> dict[str, pl.DataFrame]:
    """The weekly net revenue forecast from a `weekly_sales` table (its complete weeks).

    Returns three tables:

    - `sales_forecast`: one row per week: the complete weeks (`kind` "actual") then the next
      `horizon` weeks (`kind` "forecast") with the point forecast in `net_revenue`, the 80%
      and 95% prediction intervals (null on actual weeks) and the `model` used (the method, or
      for ETS its candidate);
    - `forecast_backtest`: every candidate's rolling-origin backtest (`backtest`), `chosen`
      marking the published one; empty when there are fewer than `MIN_TRAINING` + 1 weeks;
    - `forecast_models`: one row per ETS candidate fitted to every complete week, with its
      AICc, smoothing parameters (alpha, beta, phi), residual standard deviation and a one-line
      `note`; with fewer than `MIN_WEEKS` complete weeks no model is fitted, and a single row
      (`model` "none") says why: the forecast then holds the actual weeks only.
    """
    if horizon < 1:
        raise InputError(f"the forecast horizon must be at least 1 week, not {horizon}")
    history = _complete_weeks(weekly)
    weeks, y = history["week"], history["net_revenue"].cast(pl.Float64).to_numpy()
    actual = history.select(
        "week",
        kind=pl.lit("actual"),
        net_revenue=pl.col("net_revenue").cast(pl.Float64),
        **{
            f"{side}_{level}": pl.lit(None, pl.Float64) for level in LEVELS for side in ("lo", "hi")
        },
        model=pl.lit(None, pl.String),
    ).select(list(FORECAST_SCHEMA))
    n = len(y)
    if n < MIN_WEEKS:
        reason = f"{n} complete weeks: a forecast needs at least {MIN_WEEKS}"
        return {
            "sales_forecast": actual,
            "forecast_backtest": pl.DataFrame(schema=BACKTEST_SCHEMA),
            "forecast_models": _models_table({}, None, weeks, reason, None),
        }
    tested = _run_backtest(y, weeks.to_list(), horizon, MIN_TRAINING)
    with one_blas_thread():
        forecasts, fits = _forecasts(y, horizon)
    best = _best(fits)
    note = None
    if tested.chosen is None:
        note = f"no backtest: {n} complete weeks, it needs at least {MIN_TRAINING + 1}"
    # The backtest's order, best first; without a backtest, ETS by AICc. A method that cannot
    # be fitted to every week gives way to the next.
    ranked = (
        tested.table.filter(pl.col("horizon").is_null(), pl.col("mase").is_not_null())
        .sort("mase", maintain_order=True)["method"]
        .to_list()
        if tested.chosen is not None
        else [ETS]
    )
    published = next((m for m in ranked if m in forecasts), None)
    forecast = pl.DataFrame(schema=FORECAST_SCHEMA)
    if published is not None:
        predicted = forecasts[published]
        if "lo_80" not in predicted:
            errors = tested.errors[published]
            # Horizons the backtest did not reach take the errors of its last one.
            errors = errors[:, [min(k, errors.shape[1] - 1) for k in range(horizon)]]
            predicted = predicted | _error_intervals(predicted["mean"], errors)
        last = weeks[-1]
        forecast = pl.DataFrame(
            {
                "week": [last + dt.timedelta(weeks=k) for k in range(1, horizon + 1)],
                "kind": "forecast",
                "net_revenue": predicted["mean"],
                **{key: values for key, values in predicted.items() if key != "mean"},
                "model": best.model if published == ETS and best is not None else published,
            },
            schema=FORECAST_SCHEMA,
        )
    return {
        "sales_forecast": pl.concat([actual, forecast]),
        "forecast_backtest": tested.table,
        "forecast_models": _models_table(fits, best, weeks, note, published),
    }

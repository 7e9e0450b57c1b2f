"""Customer lifetime value: "buy till you die" models fitted by maximum likelihood.

BG/NBD (Fader, Hardie and Lee 2005), modified BG/NBD (Batislam, Denizel and Filiztekin 2007)
and Pareto/NBD (Schmittlein, Morrison and Colombo 1987, in the form of Fader and Hardie's 2005
note "A note on deriving the Pareto/NBD model and related expressions") for the number of
purchases and the dropout, the NBD nested in all three (no dropout), Gamma-Gamma (Fader, Hardie and Lee 2005, "RFM and
CLV") for the spend per purchase. Each log-likelihood is the closed form of the papers,
evaluated with numpy over every customer at once (customers with the same (x, t_x, T) are
counted once, with a weight); scipy maximises it. Input is the CLV summary (`clv_summary` of
either engine): frequency x = repeat purchase days, recency t_x and age T in days (any unit
works, predictions come back in the same unit), monetary_value = mean spend per repeat day.

A fit reports whether it identifies its parameters: an estimate on a bound of the search, a
standard error larger than half its estimate, a Hessian that is not positive definite or a
failed convergence each make `identified` false and say why in `problems`. Callers never use an
unidentified fit silently (`choose_model`, `lgs_fast.analyze`).

scipy is imported here only, and this module only when a model is fitted (`import lgs_fast`
stays light).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import numpy as np
import polars as pl
from numpy.typing import ArrayLike
from scipy.special import expit, hyp2f1

from lgs_fast.errors import InputError
from lgs_fast.models.clv_fit import (
    DROPOUT_SHIFT,
    MODEL_NAMES,
    PARETO_PARAMS,
    PURCHASE_MODELS,
    PURCHASE_PARAMS,
    Array,
    Fit,
    fit_gamma_gamma,
    fit_purchases,
    floats,
    log_difference,
    pareto_log_term,
)

# The fits, public here beside the predictions that use them.
from lgs_fast.models.clv_fit import fit_bgnbd as fit_bgnbd
from lgs_fast.models.clv_fit import fit_mbgnbd as fit_mbgnbd

# A month is a twelfth of a Julian year: CLV's months are calendar-neutral.
DAYS_PER_MONTH: Final = 365.25 / 12


def _log_odds_dead(fit: Fit, x: Array, tx: Array, T: Array) -> Array:
    """log of P(dropped out)/P(alive) given the history; -inf when the model rules dropout out."""
    if fit.model == "nbd":  # nobody drops out
        return np.full(np.broadcast(x, tx, T).shape, -np.inf)
    if fit.model == "pnbd":
        fit_params = np.array([fit.params[k] for k in PARETO_PARAMS])
        r, alpha, s, beta = fit_params
        return (
            np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + T) + s * np.log(beta + T)
            + log_difference(
                pareto_log_term(fit_params, x, tx), pareto_log_term(fit_params, x, T)
            )
        )  # fmt: skip
    r, alpha, a, b = (fit.params[k] for k in PURCHASE_PARAMS)
    ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    shift = DROPOUT_SHIFT[fit.model]
    can_drop = x + shift > 0  # BG/NBD: no dropout before the first repeat purchase
    b1 = np.where(can_drop, b + x + shift - 1, 1.0)
    return np.where(can_drop, np.log(a) - np.log(b1) + ratio, -np.inf)


def probability_alive(fit: Fit, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
    """P(still a customer at T | x, t_x, T), per customer."""
    x, tx, T_ = floats(frequency, recency, T)
    return expit(-_log_odds_dead(fit, x, tx, T_))


def expected_purchases(
    fit: Fit, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> Array:
    """E[purchases in (T, T + t] | x, t_x, T], per customer (same time unit as the summary).

    The papers' formula with its 2F1 term taken through Euler's transformation,
    (1 - z)^(r+x) 2F1(r+x, b+x; c; z) = (1 - z)^(a-1) 2F1(c-r-x, c-b-x; c; z), whose
    parameters do not grow with x, so frequent buyers stay finite. `t` may be an array that
    broadcasts against the customers.
    """
    x, tx, T_ = floats(frequency, recency, T)
    t_ = np.asarray(t, dtype=np.float64)
    if fit.model == "nbd":
        # Nobody drops out: the customer's rate, gamma(r + x, alpha + T) given the history,
        # runs on; its mean times t.
        return (fit.params["r"] + x) * t_ / (fit.params["alpha"] + T_)
    if fit.model == "pnbd":
        return _pareto_expected(fit, t_, x, tx, T_)
    a = fit.params["a"]
    if abs(a - 1) < _A_NEAR_ONE:
        # At a = 1 the formula is 0/0 though its limit is finite: the mean of the two sides,
        # exact to O(h^2), with h = _A_NEAR_ONE.
        below, above = (
            replace(fit, params={**fit.params, "a": 1 + d}) for d in (-_A_NEAR_ONE, _A_NEAR_ONE)
        )
        return (_expected(below, t_, x, tx, T_) + _expected(above, t_, x, tx, T_)) / 2
    return _expected(fit, t_, x, tx, T_)


_A_NEAR_ONE: Final = 1e-4


def _expected(fit: Fit, t: Array, x: Array, tx: Array, T: Array) -> Array:
    r, alpha, a, b = (fit.params[k] for k in PURCHASE_PARAMS)
    one_minus_z = (alpha + T) / (alpha + T + t)
    shift = DROPOUT_SHIFT[fit.model]
    c = a + b + x + shift - 1
    with np.errstate(invalid="ignore", over="ignore"):
        tail = one_minus_z ** (a - 1) * hyp2f1(c - r - x, a - 1, c, 1 - one_minus_z)
    # With a large (a dropout of about 1%: a = 67,000, b = 5.3 million on the shipped data cut
    # at 2011-09-01), (1 − z)^(a − 1) underflows to 0 and the 2F1 overflows: 0 · inf is NaN.
    # Euler's transformation gives the same tail as (1 − z)^(r + x) · 2F1(r + x, b + x + shift;
    # c; z), whose terms stay finite there.
    bad = ~np.isfinite(tail)
    if np.any(bad):
        euler = one_minus_z ** (r + x) * hyp2f1(r + x, b + x + shift, c, 1 - one_minus_z)
        tail = np.where(bad, euler, tail)
    return c / (a - 1) * (1 - tail) * probability_alive(fit, x, tx, T)


def _pareto_expected(fit: Fit, t: Array, x: Array, tx: Array, T: Array) -> Array:
    """Pareto/NBD: the rate's posterior mean (r + x)/(alpha + T) times the expected time alive in
    (T, T + t] given alive, times P(alive) (Fader and Hardie's note, eq. 21)."""
    r, alpha, s, beta = (fit.params[k] for k in PARETO_PARAMS)
    if abs(s - 1) < _A_NEAR_ONE:  # the lifetime's mean is log-shaped at s = 1
        alive_time = (beta + T) * np.log((beta + T + t) / (beta + T))
    else:
        alive_time = (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
    return (r + x) / (alpha + T) * alive_time * probability_alive(fit, x, tx, T)


def expected_purchases_new(fit: Fit, t: ArrayLike) -> Array:
    """E[repeat purchases in (0, t]] of a customer who has just made a first purchase."""
    return expected_purchases(fit, floats(t)[0], 0.0, 0.0, 0.0)


def expected_spend(fit: Fit, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
    """Gamma-Gamma's expected mean spend per purchase given x and the observed mean spend.

    Customers without a repeat purchase or with no positive mean spend get the population mean
    p v / (q - 1) (what the model says of a customer it knows nothing about).
    """
    x, m = floats(frequency, monetary_value)
    p, q, v = (fit.params[k] for k in ("p", "q", "v"))
    known = (x > 0) & np.isfinite(m) & (m > 0)
    xs, ms = np.where(known, x, 0.0), np.where(known, m, 0.0)
    return p * (v + xs * ms) / (p * xs + q - 1)


def discounted_purchases(
    purchases: Fit,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    days_per_month: float = DAYS_PER_MONTH,
) -> Array:
    """Σ_{k=1..months} (E[X(k·m)] − E[X((k−1)·m)]) / (1 + d)^k per customer: the expected
    purchases of each month, discounted monthly (m the month in the summary's time unit)."""
    x, tx, T_ = floats(frequency, recency, T)
    cumulative = np.column_stack(
        [expected_purchases(purchases, k * days_per_month, x, tx, T_) for k in range(months + 1)]
    )
    discount = (1 + monthly_discount) ** -np.arange(1, months + 1)
    return np.diff(cumulative, axis=1) @ discount


def lifetime_value(
    purchases: Fit,
    spend: Fit,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    days_per_month: float = DAYS_PER_MONTH,
) -> Array:
    """CLV over `months`: expected spend × expected purchases in each month, discounted monthly.

    CLV = Σ_{k=1..months} spend · (E[X(k·m)] − E[X((k−1)·m)]) / (1 + d)^k, m the month in the
    summary's time unit (days by default), d the monthly discount rate.
    """
    x, mv = floats(frequency, monetary_value)
    return expected_spend(spend, x, mv) * discounted_purchases(
        purchases, x, recency, T, months=months, monthly_discount=monthly_discount,
        days_per_month=days_per_month,
    )  # fmt: skip


def own_mean_spend(frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
    """Where Gamma-Gamma does not fit: each customer's own mean spend per repeat purchase day,
    and for a customer without one the mean of those (NaN when no customer has one)."""
    x, m = floats(frequency, monetary_value)
    known = (x > 0) & np.isfinite(m) & (m > 0)
    fallback = float(m[known].mean()) if known.any() else math.nan
    return np.where(known, m, fallback)


@dataclass(frozen=True)
class ClvSettings:
    """What the CLV outputs depend on besides the summary.

    model: "auto" uses the identified purchase model with the highest likelihood, or none;
    a named model is used even when not identified (and said to be so). horizon_days: the
    window of `expected_purchases`; months and monthly_discount: the CLV's horizon and rate;
    calibration_end: first day of the holdout (the models are then also fitted on the lines
    before it and checked on the rest).
    """

    model: Literal["auto", "bgnbd", "mbgnbd", "pnbd", "nbd"] = "auto"
    horizon_days: int = 90
    months: int = 12
    monthly_discount: float = 0.01
    calibration_end: dt.date | None = None

    def __post_init__(self) -> None:
        if self.model not in ("auto", *PURCHASE_MODELS):
            raise InputError(
                f"unknown model {self.model!r}; choose auto, {', '.join(PURCHASE_MODELS)}"
            )
        if self.horizon_days < 1:
            raise InputError(f"--horizon must be at least 1 day, not {self.horizon_days}")
        if not 1 <= self.months <= 600:
            raise InputError(f"--months must be between 1 and 600, not {self.months}")
        if not 0 <= self.monthly_discount < 1:
            raise InputError(
                f"--discount is a monthly rate from 0 to 1 (0.01 = 1%), not {self.monthly_discount}"
            )


@dataclass(frozen=True)
class CustomerModel:
    """Every purchase model fitted, the spend model, and which purchase model is used (if any)."""

    purchases: dict[str, Fit]
    spend: Fit | None
    used: str | None
    spend_problem: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def verdicts(self) -> list[str]:
        """One line per model, plainly: whether it fits, and which one the predictions use."""
        lines = [f.verdict() for f in self.purchases.values()]
        lines.append(self.spend.verdict() if self.spend else f"Gamma-Gamma: {self.spend_problem}")
        return [*lines, *self.notes]


def _frame(summary: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    return summary.collect() if isinstance(summary, pl.LazyFrame) else summary


def _columns(frame: pl.DataFrame, *names: str) -> list[Array]:
    return [frame[n].cast(pl.Float64).fill_null(math.nan).to_numpy() for n in names]


NBD_NOTE: Final = (
    "predictions use the NBD, with no dropout: these data cannot tell a customer who stopped "
    "buying for good from one buying at a slower pace, so expected purchases assume each "
    "customer keeps their own pace, and the probability of still being a customer is 1 for all"
)


OWN_SPEND_NOTE: Final = (
    "the spend model (Gamma-Gamma) does not fit, so expected spend is each customer's own mean "
    "spend per purchase day (for a customer without a repeat day, the mean of the others)"
)


def _choose(purchases: dict[str, Fit], wanted: str) -> tuple[str | None, tuple[str, ...]]:
    if wanted != "auto":
        fit = purchases[wanted]
        if fit.identified:
            return wanted, (f"predictions use {MODEL_NAMES[wanted]} (chosen)",)
        return wanted, (
            f"predictions use {MODEL_NAMES[wanted]} as asked, although it does not fit: "
            "treat them as unreliable",
        )
    good = [f for f in purchases.values() if f.identified]
    if not good:
        return None, (
            "no purchase model fits these data, so no customer gets a probability alive, "
            "expected purchases or CLV",
        )
    # A dropout model is identified only where it beats the NBD nested in it, so the highest
    # likelihood is a dropout model where one fits, else the NBD.
    best = max(good, key=lambda f: f.log_likelihood)
    if best.model == "nbd":
        return best.model, (NBD_NOTE,)
    return best.model, (f"predictions use {MODEL_NAMES[best.model]} (highest likelihood)",)


def fit(summary: pl.LazyFrame | pl.DataFrame, settings: ClvSettings | None = None) -> CustomerModel:
    """Fit every purchase model and Gamma-Gamma to a CLV summary (`clv_summary`'s columns)."""
    settings = settings or ClvSettings()
    frame = _frame(summary)
    x, tx, T, m = _columns(frame, "frequency", "recency", "T", "monetary_value")
    nbd = fit_purchases("nbd", x, tx, T)  # nested in every other model: fitted once
    purchases = {
        name: nbd if name == "nbd" else fit_purchases(name, x, tx, T, nbd=nbd)
        for name in PURCHASE_MODELS
    }
    used, notes = _choose(purchases, settings.model)
    try:
        spend: Fit | None = fit_gamma_gamma(x, m)
        problem = None
    except InputError as err:
        spend, problem = None, f"not fitted: {err}"
    if spend is not None and spend.params["q"] <= 1:
        problem = "q <= 1: the mean spend has no finite expectation"
    if spend is not None and not spend.identified:
        problem = "does not fit: " + "; ".join(spend.problems)
    if problem is not None and used is not None:
        notes = (*notes, OWN_SPEND_NOTE)
    return CustomerModel(purchases, spend, used, problem, notes)


_CLV_SCHEMA: Final = {
    "probability_alive": pl.Float64,
    "expected_purchases": pl.Float64,
    "expected_spend": pl.Float64,
    "clv": pl.Float64,
}


def predict(
    model: CustomerModel, summary: pl.LazyFrame | pl.DataFrame, settings: ClvSettings | None = None
) -> pl.DataFrame:
    """The `clv` table: the summary and, per customer, probability alive, expected purchases in
    the next `horizon_days`, expected spend per purchase day (Gamma-Gamma's, else the customer's
    own mean) and CLV over `months` (empty when no purchase model is used)."""
    settings = settings or ClvSettings()
    frame = _frame(summary)
    x, tx, T, m = _columns(frame, "frequency", "recency", "T", "monetary_value")
    n = frame.height
    values = {name: np.full(n, np.nan) for name in _CLV_SCHEMA}
    purchases = model.purchases.get(model.used) if model.used else None
    if purchases is not None:
        values["probability_alive"] = probability_alive(purchases, x, tx, T)
        values["expected_purchases"] = expected_purchases(
            purchases, settings.horizon_days, x, tx, T
        )
    if purchases is not None:
        spend_fits = model.spend is not None and model.spend_problem is None
        values["expected_spend"] = (
            expected_spend(model.spend, x, m) if spend_fits else own_mean_spend(x, m)  # type: ignore[arg-type]
        )
        values["clv"] = values["expected_spend"] * discounted_purchases(
            purchases, x, tx, T,
            months=settings.months, monthly_discount=settings.monthly_discount,
        )  # fmt: skip
    extra = pl.DataFrame(values, schema=_CLV_SCHEMA).with_columns(pl.all().fill_nan(None))
    return pl.concat(
        [frame.select("customer_id", "frequency", "recency", "T", "monetary_value"), extra],
        how="horizontal",
    )


def models_table(model: CustomerModel) -> pl.DataFrame:
    """`clv_models`: one row per model and parameter, with its standard error and verdict."""
    rows = []
    fits = [*model.purchases.values(), *([model.spend] if model.spend else [])]
    for f in fits:
        used = f.model == model.used or (f.model == "gamma_gamma" and model.spend_problem is None)
        for name, value in f.params.items():
            rows.append(
                {
                    "model": f.model, "model_name": MODEL_NAMES[f.model], "parameter": name,
                    "estimate": value, "standard_error": f.standard_errors[name],
                    "log_likelihood": f.log_likelihood, "customers": f.customers,
                    "identified": f.identified, "used": bool(used and model.used is not None),
                    "verdict": f.verdict(),
                }
            )  # fmt: skip
    schema = {
        "model": pl.String, "model_name": pl.String, "parameter": pl.String,
        "estimate": pl.Float64, "standard_error": pl.Float64, "log_likelihood": pl.Float64,
        "customers": pl.Int64, "identified": pl.Boolean, "used": pl.Boolean,
        "verdict": pl.String,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema).with_columns(pl.col("standard_error").fill_nan(None))


# The holdout chart groups customers by calibration frequency 0 .. 6 and "7 or more".
HOLDOUT_TOP_FREQUENCY: Final = 7


OWN_RATE: Final = "own_rate"


EQUAL_WINDOW: Final = "equal_window"


def _holdout_scores(
    predicted: Array, actual: Array, customers: int, days: float
) -> dict[str, float | int | None]:
    """How `predicted` holdout purchases compare with `actual`: totals, MAE, bias, RMSE, rank
    correlation (Spearman) and the share of the actual purchases made by the tenth of customers
    predicted to buy most (ties by position, which is customer order)."""
    from scipy.stats import spearmanr

    error = predicted - actual
    top = np.argsort(-predicted, kind="stable")[: max(1, len(predicted) // 10)]
    total = float(actual.sum())
    with np.errstate(invalid="ignore"):
        rho = float(spearmanr(predicted, actual).statistic) if len(actual) > 1 else math.nan
    return {
        "calibration_customers": customers, "holdout_days": int(days),
        "actual_purchases": total, "predicted_purchases": float(predicted.sum()),
        "total_error_pct": 100 * (predicted.sum() / total - 1) if total else None,
        "mae": float(np.abs(error).mean()), "bias": float(error.mean()),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "spearman": rho if math.isfinite(rho) else None,
        "top_decile_share": float(actual[top].sum()) / total if total else None,
    }  # fmt: skip


def holdout(
    calibration: pl.LazyFrame | pl.DataFrame,
    full: pl.LazyFrame | pl.DataFrame,
    earlier: pl.LazyFrame | pl.DataFrame | None = None,
) -> dict[str, pl.DataFrame]:
    """Every purchase model fitted on the calibration summary, checked on the holdout.

    A calibration customer's actual holdout purchases are the purchase days after the
    calibration end: full frequency − calibration frequency (a day falls on one side). The
    holdout lasts from the calibration's end day to the full summary's, T_full − T_cal days.
    Returns `clv_holdout` (per model, then two baselines: the customer's own past rate and,
    given `earlier`, the summary as of the holdout's length before the calibration end, the
    purchase days in that equal earlier window; totals, MAE, bias, RMSE, rank correlation,
    top-decile share, whether the model fits),
    `clv_holdout_customers` and `clv_holdout_by_frequency` (means per calibration frequency).
    """
    cal, whole = _frame(calibration), _frame(full)
    joined = cal.join(
        whole.select(
            "customer_id", pl.col("frequency").alias("full_frequency"), pl.col("T").alias("full_T")
        ),
        on="customer_id",
        how="left",
    )
    actual = (joined["full_frequency"] - joined["frequency"]).cast(pl.Float64).to_numpy()
    days = float((joined["full_T"] - joined["T"]).max() or 0)
    x, tx, T = _columns(joined, "frequency", "recency", "T")
    per_model, customers = [], []
    for name in PURCHASE_MODELS:
        f = fit_purchases(name, x, tx, T)
        predicted = expected_purchases(f, days, x, tx, T)
        per_model.append(
            {
                "model": name, "model_name": MODEL_NAMES[name], "identified": f.identified,
                "verdict": f.verdict(), **_holdout_scores(predicted, actual, cal.height, days),
            }
        )  # fmt: skip
        customers.append(
            pl.DataFrame(
                {
                    "customer_id": joined["customer_id"],
                    "model": name,
                    "calibration_frequency": joined["frequency"],
                    "actual_purchases": actual.astype(np.int64),
                    "predicted_purchases": predicted,
                }
            )  # fmt: skip
        )
    # The baseline a model must beat: each customer's own past pace, repeat purchase days per
    # day since their first, carried over the holdout.
    own_rate = np.where(T > 0, x / np.where(T > 0, T, 1.0), 0.0) * days
    per_model.append(
        {
            "model": OWN_RATE, "model_name": "own past rate (baseline)", "identified": None,
            "verdict": "baseline: each customer's repeat purchase days per day so far, carried on",
            **_holdout_scores(own_rate, actual, cal.height, days),
        }
    )  # fmt: skip
    if earlier is not None:
        # Purchase days in the window of the holdout's length that ends at the calibration end:
        # the repeat days since, plus the first purchase for customers who started within it.
        before = _frame(earlier).select("customer_id", pl.col("frequency").alias("earlier"))
        window = (
            joined.join(before, on="customer_id", how="left")
            .select(pl.col("frequency") - pl.col("earlier").fill_null(-1))["frequency"]
            .cast(pl.Float64)
            .to_numpy()
        )
        per_model.append(
            {
                "model": EQUAL_WINDOW, "model_name": "same span before (baseline)",
                "identified": None,
                "verdict": f"baseline: each customer's purchase days in the {int(days)} days "
                "before the calibration end, repeated",
                **_holdout_scores(window, actual, cal.height, days),
            }
        )  # fmt: skip
    per_customer = pl.concat(customers)
    by_frequency = (
        per_customer.with_columns(
            pl.col("calibration_frequency").clip(upper_bound=HOLDOUT_TOP_FREQUENCY)
        )
        .group_by("model", "calibration_frequency")
        .agg(
            customers=pl.len().cast(pl.Int64),
            actual_purchases=pl.col("actual_purchases").mean(),
            predicted_purchases=pl.col("predicted_purchases").mean(),
        )
        .sort("model", "calibration_frequency")
    )
    return {
        "clv_holdout": pl.DataFrame(per_model),
        "clv_holdout_customers": per_customer,
        "clv_holdout_by_frequency": by_frequency,
    }


# The matrix's columns: days since the last purchase, from 0 to the longest T in this many steps;
# its rows: repeat purchase days from 0 to the 99th percentile, at most this many.
MATRIX_STEPS: Final = 8


MATRIX_TOP_FREQUENCY: Final = 20


MATRIX_SCHEMA: Final = {
    "frequency": pl.Int64, "days_since_last": pl.Int64, "age": pl.Int64,
    "probability_alive": pl.Float64, "expected_purchases": pl.Float64, "horizon_days": pl.Int64,
}  # fmt: skip


def expectation_matrix(
    model: CustomerModel, summary: pl.LazyFrame | pl.DataFrame, settings: ClvSettings | None = None
) -> pl.DataFrame:
    """`clv_matrix`: what the model in use expects of a customer by their history, as lifetimes'
    frequency/recency and probability-alive matrices draw it.

    For a customer whose first purchase was as long ago as the oldest customer's (`age`, the
    longest T): per number of repeat purchase days (0 to the 99th percentile of the summary's,
    at most `MATRIX_TOP_FREQUENCY`)
    and days since the last purchase (0 to `age` in `MATRIX_STEPS` steps; a customer without a
    repeat purchase last bought `age` days ago), the probability of still buying and the
    expected purchase days in the next `horizon_days`. Empty when no purchase model is used.
    """
    settings = settings or ClvSettings()
    frame = _frame(summary)
    fit = model.purchases.get(model.used) if model.used else None
    if fit is None or frame.height == 0:
        return pl.DataFrame(schema=MATRIX_SCHEMA)
    age = int(frame["T"].max())  # type: ignore[arg-type]
    top = min(int(frame["frequency"].quantile(0.99, "nearest") or 0), MATRIX_TOP_FREQUENCY)  # type: ignore[arg-type]
    since = np.unique(np.round(np.linspace(0, age, MATRIX_STEPS + 1)))
    frequency = np.concatenate([[0.0], np.repeat(np.arange(1, top + 1, dtype=float), since.size)])
    days = np.concatenate([[float(age)], np.tile(since, top)])
    recency, T = age - days, np.full(days.size, float(age))
    return pl.DataFrame(
        {
            "frequency": frequency.astype(np.int64),
            "days_since_last": days.astype(np.int64),
            "age": np.full(days.size, age, dtype=np.int64),
            "probability_alive": probability_alive(fit, frequency, recency, T),
            "expected_purchases": expected_purchases(
                fit, settings.horizon_days, frequency, recency, T
            ),
            "horizon_days": settings.horizon_days,
        },
        schema=MATRIX_SCHEMA,
    )


def value_by_segment(clv_table: pl.DataFrame, rfm_table: pl.DataFrame) -> pl.DataFrame:
    """`clv_segments`: customers, mean probability alive, expected purchases and CLV per segment,
    in the one order of segments (largest total net spend first, as the segment table)."""
    return (
        clv_table.join(
            rfm_table.select("customer_id", "segment", "monetary"), on="customer_id", how="left"
        )
        .group_by("segment")
        .agg(
            customers=pl.len().cast(pl.Int64),
            mean_probability_alive=pl.col("probability_alive").mean(),
            expected_purchases=pl.col("expected_purchases").sum(),
            mean_clv=pl.col("clv").mean(),
            total_clv=pl.col("clv").sum(),
            net_spend=pl.col("monetary").sum(),
        )
        .with_columns(
            pl.when(pl.col("mean_clv").is_not_null()).then(pl.col("total_clv")).alias("total_clv"),
            pl.when(pl.col("mean_probability_alive").is_not_null())
            .then(pl.col("expected_purchases"))
            .alias("expected_purchases"),
        )
        .sort("net_spend", "segment", descending=[True, False], nulls_last=True)
        .drop("net_spend")
    )


def clv_tables(
    summary: pl.LazyFrame | pl.DataFrame,
    settings: ClvSettings | None = None,
    *,
    calibration: pl.LazyFrame | pl.DataFrame | None = None,
    rfm_table: pl.DataFrame | None = None,
    earlier: pl.LazyFrame | pl.DataFrame | None = None,
) -> tuple[CustomerModel, dict[str, pl.DataFrame]]:
    """The fitted model and every CLV output table: `clv`, `clv_models`, `clv_matrix`, with `rfm_table`
    `clv_segments`, with a `calibration` summary the three holdout tables."""
    settings = settings or ClvSettings()
    frame = _frame(summary)
    model = fit(frame, settings)
    tables = {
        "clv": predict(model, frame, settings),
        "clv_models": models_table(model),
        "clv_matrix": expectation_matrix(model, frame, settings),
    }
    if rfm_table is not None:
        tables["clv_segments"] = value_by_segment(tables["clv"], rfm_table)
    if calibration is not None:
        tables.update(holdout(calibration, frame, earlier))
    return model, tables

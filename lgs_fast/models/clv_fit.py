"""Fitting the CLV models by maximum likelihood: BG/NBD, MBG/NBD, Pareto/NBD and the NBD for purchases, Gamma-Gamma for spend, with standard errors from the Hessian, on the distinct (x, t_x, T) rows of the customers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1

from lgs_fast.errors import InputError
from lgs_fast.models.threads import one_blas_thread

Array = NDArray[np.float64]


PurchaseModel = Literal["bgnbd", "mbgnbd", "pnbd", "nbd"]


PURCHASE_MODELS: Final[tuple[PurchaseModel, ...]] = ("bgnbd", "mbgnbd", "pnbd", "nbd")


MODEL_NAMES: Final[dict[str, str]] = {
    "bgnbd": "BG/NBD",
    "mbgnbd": "modified BG/NBD",
    "pnbd": "Pareto/NBD",
    "nbd": "NBD (no dropout)",
    "gamma_gamma": "Gamma-Gamma",
}


# The search runs on log parameters within these bounds; an estimate within LOG_MARGIN of one
# is on the bound: the data push it to 0 or infinity, so it is not identified.
LOG_BOUNDS: Final = (-16.0, 16.0)


LOG_MARGIN: Final = 0.05


# A standard error above half the estimate: the data cannot tell the estimate from 0 (z < 2).
RELATIVE_SE_LIMIT: Final = 0.5


# The dropout process (a, b) must beat "nobody drops out" by a likelihood-ratio test: 2 ΔLL
# above the 95% point of chi-squared with 2 degrees of freedom. Where it does not, a and b slide
# along a flat ridge (a -> 0, b -> infinity) and their standard errors mean nothing.
DROPOUT_LR_LIMIT: Final = 5.991


@dataclass(frozen=True)
class Fit(Mapping[str, float]):
    """A maximum-likelihood fit: a mapping of its estimates and `log_likelihood`.

    `fit["r"]`, `fit["log_likelihood"]`; `standard_errors` per parameter (delta method from the
    observed information); `identified` is false, with the reasons in `problems`, when a
    parameter is not pinned down by the data.
    """

    model: str
    params: dict[str, float]
    log_likelihood: float
    standard_errors: dict[str, float]
    converged: bool
    customers: int
    problems: tuple[str, ...] = ()

    @property
    def identified(self) -> bool:
        return not self.problems

    def __getitem__(self, key: str) -> float:
        if key == "log_likelihood":
            return self.log_likelihood
        return self.params[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self.params, "log_likelihood"])

    def __len__(self) -> int:
        return len(self.params) + 1

    def verdict(self) -> str:
        """One line for people: fitted, or why the fit must not be used."""
        name = MODEL_NAMES.get(self.model, self.model)
        if self.identified:
            return f"{name} fits: every parameter identified"
        return f"{name} does not fit: " + "; ".join(self.problems)


@dataclass(frozen=True)
class _Data:
    """The distinct rows of the fit's columns, each with its weight (how many customers share
    it), and the distinct values of the first column, x: the gamma-function terms depend on x
    alone, so they are computed once per distinct x (a few hundred) rather than once per row
    (tens of thousands), which makes each evaluation of the likelihood several times cheaper."""

    columns: list[Array]
    weight: Array
    x_values: Array
    x_index: NDArray[np.intp]
    pair_cache: dict[int, tuple[list[Array], NDArray[np.intp]]] = field(default_factory=dict)

    @classmethod
    def of(cls, columns: list[Array]) -> _Data:
        distinct, counts, _ = _distinct_rows(columns)
        x_values, x_index = np.unique(distinct[0], return_inverse=True)
        return cls(distinct, counts.astype(np.float64), x_values, x_index)

    def by_x(self, values: Array) -> Array:
        """Per row, a term computed on the distinct x values."""
        return values[self.x_index]

    def pairs(self, column: int) -> tuple[list[Array], NDArray[np.intp]]:
        """The distinct (x, `column`) pairs and, per row, the index of its pair."""
        if column not in self.pair_cache:
            distinct, _, back = _distinct_rows([self.columns[0], self.columns[column]])
            self.pair_cache[column] = (distinct, back)
        return self.pair_cache[column]


def _distinct_rows(columns: list[Array]) -> tuple[list[Array], NDArray[np.intp], NDArray[np.intp]]:
    """The distinct rows of `columns` (sorted), how many times each occurs, and per input row the
    index of its distinct row. `np.unique(..., axis=0)` does the same by sorting the rows as
    opaque records: 1.2 s for 768,000 customers, against 0.1 s for this lexicographic sort."""
    order = np.lexsort(columns[::-1])
    ordered = [column[order] for column in columns]
    starts_new = np.ones(order.size, dtype=bool)
    if order.size:
        starts_new[1:] = np.any([c[1:] != c[:-1] for c in ordered], axis=0)
    starts = np.flatnonzero(starts_new)
    counts = np.diff(np.append(starts, order.size))
    back = np.empty(order.size, dtype=np.intp)
    back[order] = np.cumsum(starts_new) - 1
    return [c[starts] for c in ordered], counts, back


# Each returns the log-likelihood per row and, per parameter, its derivative per row: with exact
# gradients the search needs a fraction of the evaluations that finite differences take, and
# stops on a gradient that is really zero (tests/test_clv_models.py checks them against finite
# differences).
Gradient = list[Array]


# BG/NBD and modified BG/NBD differ in one place: where a customer can drop out. BG/NBD: after
# each repeat purchase (so never before the first); modified: at time 0 too. In the formulas
# that is a shift of one in the terms of b, and the dropout term exists for every x.
DROPOUT_SHIFT: Final = {"bgnbd": 0, "mbgnbd": 1}


def _dropout_ll(params: Array, d: _Data, shift: int) -> tuple[Array, Gradient]:
    r, alpha, a, b = params
    x, tx, T = d.columns
    xv = d.x_values
    per_x = (
        gammaln(r + xv) - gammaln(r) + r * np.log(alpha)
        + gammaln(a + b) + gammaln(b + xv + shift) - gammaln(b) - gammaln(a + b + xv + shift)
    )  # fmt: skip
    a3 = -(r + x) * np.log(alpha + T)
    can_drop = x + shift > 0
    b1 = np.where(can_drop, b + x + shift - 1, 1.0)  # > 0 wherever it is used
    a4 = np.where(can_drop, np.log(a) - np.log(b1) - (r + x) * np.log(alpha + tx), -np.inf)
    mix = np.logaddexp(a3, a4)
    w = np.exp(a4 - mix)  # the share of the "dropped out after t_x" term
    gradient = [
        d.by_x(digamma(r + xv) - digamma(r) + np.log(alpha))
        - (1 - w) * np.log(alpha + T)
        - w * np.log(alpha + tx),
        r / alpha - (r + x) * ((1 - w) / (alpha + T) + w / (alpha + tx)),
        d.by_x(digamma(a + b) - digamma(a + b + xv + shift)) + w / a,
        d.by_x(digamma(a + b) + digamma(b + xv + shift) - digamma(b) - digamma(a + b + xv + shift))
        - w / b1,
    ]
    return d.by_x(per_x) + mix, gradient


def _bgnbd_ll(params: Array, d: _Data) -> tuple[Array, Gradient]:
    return _dropout_ll(params, d, DROPOUT_SHIFT["bgnbd"])


def _mbgnbd_ll(params: Array, d: _Data) -> tuple[Array, Gradient]:
    return _dropout_ll(params, d, DROPOUT_SHIFT["mbgnbd"])


def _nbd_ll(params: Array, d: _Data) -> tuple[Array, Gradient]:
    # BG/NBD and modified BG/NBD without dropout (a -> 0): Poisson purchases, gamma rates.
    r, alpha = params
    x, _, T = d.columns
    xv = d.x_values
    per_x = gammaln(r + xv) - gammaln(r) + r * np.log(alpha)
    gradient = [
        d.by_x(digamma(r + xv) - digamma(r) + np.log(alpha)) - np.log(alpha + T),
        r / alpha - (r + x) / (alpha + T),
    ]
    return d.by_x(per_x) - (r + x) * np.log(alpha + T), gradient


def pareto_log_term(params: Array, x: Array, t: Array) -> Array:
    """log of one of the two terms of Pareto/NBD's A_0 (Fader and Hardie's note, eq. 19-20),
    2F1(r+s+x, b; r+s+x+1; z(t)) / (max(alpha, beta) + t)^(r+s+x), with z(t) =
    |alpha − beta|/(max(alpha, beta) + t) and b = r + x when alpha < beta, else s + 1.

    The 2F1 is taken through Euler's transformation, 2F1(a, b; c; z) = (1 − z)^(c−a−b)
    2F1(c − a, c − b; c; z), whose first parameter is 1: where dropout is nearly absent (beta
    in the tens of thousands) z is within 1e-3 of 1, and the untransformed series took 90 ms per
    evaluation against 1 ms.
    """
    r, alpha, s, beta = params
    if alpha >= beta:
        base, low, other, power = alpha, beta, r + x, -s  # c − a − b with b = s + 1
    else:
        base, low, other, power = beta, alpha, s + 1, 1 - r - x  # c − a − b with b = r + x
    rsx = r + s + x
    z = (base - low) / (base + t)
    log_one_minus_z = np.log(low + t) - np.log(base + t)
    return np.log(hyp2f1(1.0, other, rsx + 1, z)) + power * log_one_minus_z - rsx * np.log(base + t)


def log_difference(at_tx: Array, at_T: Array) -> Array:
    """log A_0 = log(e^u − e^v), u the term at t_x, v at T (u ≥ v); −inf when t_x = T."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return at_tx + np.log1p(-np.exp(at_T - at_tx))


def _pareto_rows(params: Array, d: _Data) -> Array:
    r, alpha, s, beta = params
    x, tx, T = d.columns
    xv = d.x_values
    per_x = gammaln(r + xv) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    # The hypergeometric terms, the costly part, depend on (x, t_x) and on (x, T): computed once
    # per distinct pair (about 4,000 of each among 46,000 histories at 10M lines).
    (x_a, tx_a), back_a = d.pairs(1)
    (x_b, T_b), back_b = d.pairs(2)
    log_a0 = log_difference(
        pareto_log_term(params, x_a, tx_a)[back_a], pareto_log_term(params, x_b, T_b)[back_b]
    )
    dropped = np.log(s) - np.log(r + s + x) + log_a0
    # Far out of range a hypergeometric term is not finite: the row is NaN, and the search,
    # which reads a non-finite likelihood as the worst, steps back.
    with np.errstate(invalid="ignore"):
        return d.by_x(per_x) + np.logaddexp(alive, dropped)


# The Pareto/NBD's gradient through its hypergeometric terms has no short closed form: forward
# differences in each parameter, 4 more evaluations of the vectorised likelihood (central ones
# took 8 and moved no estimate on CDNOW beyond the 6th digit).
_PARETO_STEP: Final = 1e-7


def _pareto_nbd_ll(params: Array, d: _Data) -> tuple[Array, Gradient]:
    rows = _pareto_rows(params, d)
    gradient = []
    for i, value in enumerate(params):
        up = params.copy()
        up[i] = value * (1 + _PARETO_STEP)
        gradient.append((_pareto_rows(up, d) - rows) / (value * _PARETO_STEP))
    return rows, gradient


def _gamma_gamma_ll(params: Array, d: _Data) -> tuple[Array, Gradient]:
    p, q, v = params
    x, m = d.columns
    xv = d.x_values
    px = p * xv
    per_x = gammaln(px + q) - gammaln(px) - gammaln(q) + px * np.log(xv)
    spent = x * m + v
    ll = d.by_x(per_x) + q * np.log(v) + (p * x - 1) * np.log(m) - (p * x + q) * np.log(spent)
    gradient = [
        d.by_x(xv * (digamma(px + q) - digamma(px) + np.log(xv))) + x * (np.log(m) - np.log(spent)),
        d.by_x(digamma(px + q) - digamma(q)) + np.log(v) - np.log(spent),
        q / v - (p * x + q) / spent,
    ]
    return ll, gradient


def _hessian(f: Callable[[Array], float], at: Array, step: float = 1e-4) -> Array:
    """Central second differences of `f` at `at` (a handful of parameters)."""
    k = at.size
    eye = np.eye(k) * step
    h = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            value = (
                f(at + eye[i] + eye[j]) - f(at + eye[i] - eye[j])
                - f(at - eye[i] + eye[j]) + f(at - eye[i] - eye[j])
            ) / (4 * step * step)  # fmt: skip
            h[i, j] = h[j, i] = value
    return h


# One BLAS thread (lgs_fast/models/threads.py): ten times faster here, and the same every run.
@one_blas_thread()
def _maximise(
    model: str,
    names: tuple[str, ...],
    loglik: Callable[..., Array],
    data: list[Array],
    scales: Array,
    customers: int,
    nested: float | None = None,
    stop: Callable[[Array], str | None] | None = None,
    start: Array | None = None,
) -> Fit:
    """Maximum likelihood on log parameters, then standard errors and the identification verdict.

    `scales` divide the parameters during the search (alpha by the time scale, v by the money
    scale), so one starting point (every parameter 1) suits days, weeks or pounds alike.
    `nested`: the log-likelihood of the model without dropout; a dropout model that does not
    beat it by the likelihood-ratio test is not identified, and its standard errors (the
    costliest part of the fit, on a ridge where they mean nothing) are not computed. `stop`,
    given the parameters after each step of the search, names a reason to stop early (the
    search heads to a bound where the model becomes the nested one): it stops there and says so.
    `start`: where the search starts, in its coordinates (log of parameter / scale; default 0).
    """
    prepared = _Data.of(data)
    rows = _ROWS.get(model, lambda params, d: loglik(params, d)[0])
    weight = prepared.weight
    total = float(weight.sum())

    def negative_and_gradient(log_scaled: Array) -> tuple[float, Array]:
        params = np.exp(log_scaled) * scales
        rows, gradient = loglik(params, prepared)
        value = -np.dot(weight, rows) / total
        if not np.isfinite(value):
            return 1e300, np.zeros_like(log_scaled)
        # d/d(log p) = p d/dp: the search runs on log parameters.
        slope = -np.array([np.dot(weight, g) for g in gradient]) * params / total
        return float(value), slope

    def negative(log_scaled: Array) -> float:
        value = -np.dot(weight, rows(np.exp(log_scaled) * scales, prepared)) / total
        return float(value) if np.isfinite(value) else 1e300

    start = np.zeros(len(names)) if start is None else start
    bounds = [LOG_BOUNDS] * len(names)
    stopped: list[str] = []

    def check(intermediate_result: Any) -> None:
        # scipy passes the step as `intermediate_result` (by that name) and stops on StopIteration.
        reason = stop(np.exp(intermediate_result.x) * scales) if stop is not None else None
        if reason is not None:
            stopped.append(reason)
            raise StopIteration

    result = minimize(
        negative_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000}, callback=check,
    )  # fmt: skip
    # Where L-BFGS-B stops short of the optimum (its line search gives up on a flat ridge),
    # a bounded simplex polishes; with exact gradients that is rarely needed. Not where the
    # dropout is far from identified: there the ridge is the one towards no dropout, the polish
    # took a thousand steps (1.3 s at 10M lines) to gain 1e-6 in log-likelihood, and no polish
    # turns a likelihood ratio under half the test's limit into a pass.
    polished = result
    gain = 2 * (total * -result.fun - nested) if nested is not None else math.inf
    if stopped:
        result.success = True  # stopped on purpose: the verdict says why below
    elif not result.success and gain < DROPOUT_LR_LIMIT / 2:
        stopped.append(
            f"it ended on a flat ridge (likelihood ratio against no dropout {gain:.2f}): "
            "not polished"
        )
        result.success = True
    elif not result.success:
        polished = minimize(
            negative, result.x, method="Nelder-Mead", bounds=bounds,
            options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 400 * len(names)},
        )  # fmt: skip
    best = polished if polished.fun <= result.fun else result
    log_est = np.clip(best.x, *LOG_BOUNDS)
    estimates = np.exp(log_est) * scales
    log_likelihood = float(np.dot(weight, rows(estimates, prepared)))
    problems = [f"search stopped early: {reason}" for reason in stopped]
    if not (result.success or polished.success):
        problems.append(f"the search did not converge ({result.message})")
    ratio = 2 * (log_likelihood - nested) if nested is not None else math.inf
    if ratio < DROPOUT_LR_LIMIT:
        problems.append(
            f"dropout not identified: the fit is no better than no dropout at all "
            f"(likelihood ratio {ratio:.2f} < {DROPOUT_LR_LIMIT}); standard errors not computed"
        )
        se = dict.fromkeys(names, math.nan)
    else:
        # Standard errors on log parameters (the search's coordinates), then the delta method.
        information = _hessian(negative, log_est) * total
        se = _standard_errors(information, estimates, names, problems)
    for name, lp, value in zip(names, log_est, estimates, strict=True):
        if lp <= LOG_BOUNDS[0] + LOG_MARGIN or lp >= LOG_BOUNDS[1] - LOG_MARGIN:
            problems.append(f"{name} = {value:.3g} is on a bound of the search")
    for name, value in zip(names, estimates, strict=True):
        if math.isfinite(se[name]) and se[name] > RELATIVE_SE_LIMIT * value:
            problems.append(f"{name} = {value:.3g} has standard error {se[name]:.3g}")
    return Fit(
        model=model,
        params=dict(zip(names, map(float, estimates), strict=True)),
        log_likelihood=log_likelihood,
        standard_errors=se,
        converged=bool(result.success or polished.success),
        customers=customers,
        problems=tuple(problems),
    )


def _standard_errors(
    information: Array, estimates: Array, names: tuple[str, ...], problems: list[str]
) -> dict[str, float]:
    nan = dict.fromkeys(names, math.nan)
    if not np.all(np.isfinite(information)):
        problems.append("the likelihood is not finite around the estimate")
        return nan
    eigenvalues = np.linalg.eigvalsh(information)
    if eigenvalues.min() <= 0:
        problems.append(
            "the likelihood is flat or not at a maximum (Hessian not positive definite)"
        )
        return nan
    log_variance = np.diag(np.linalg.inv(information))
    return {
        n: float(e * math.sqrt(v)) for n, e, v in zip(names, estimates, log_variance, strict=True)
    }


def floats(*values: ArrayLike) -> list[Array]:
    return [np.asarray(v, dtype=np.float64).ravel() for v in values]


def _check_purchases(x: Array, tx: Array, T: Array) -> None:
    if not (x.size == tx.size == T.size):
        raise InputError("frequency, recency and T must have the same length")
    if x.size == 0:
        raise InputError("no customer to fit a model on")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(tx)) and np.all(np.isfinite(T))):
        raise InputError("frequency, recency and T must be finite numbers")
    if np.any(x < 0) or np.any(tx < 0) or np.any(tx > T):
        raise InputError("need 0 <= frequency and 0 <= recency <= T for every customer")


_PURCHASE_LL: Final[dict[str, Callable[..., tuple[Array, Gradient]]]] = {
    "bgnbd": _bgnbd_ll,
    "mbgnbd": _mbgnbd_ll,
    "pnbd": _pareto_nbd_ll,
    "nbd": _nbd_ll,
}


# The log-likelihood per row without its gradient, where the gradient is costly to compute.
_ROWS: Final[dict[str, Callable[[Array, _Data], Array]]] = {"pnbd": _pareto_rows}


PURCHASE_PARAMS: Final = ("r", "alpha", "a", "b")


PARETO_PARAMS: Final = ("r", "alpha", "s", "beta")


_NBD_PARAMS: Final = ("r", "alpha")


def fit_purchases(
    model: str, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *, nbd: Fit | None = None
) -> Fit:
    """Fit purchase model `model` ("bgnbd", "mbgnbd", "pnbd" or "nbd") to the summary columns.

    A dropout model whose dropout does not beat the NBD nested in it (likelihood-ratio test) is
    marked not identified; the NBD itself has no dropout to test. `nbd`: the NBD already fitted
    to the same columns (it is fitted otherwise)."""
    if model not in _PURCHASE_LL:
        raise InputError(f"unknown model {model!r}; choose one of {', '.join(PURCHASE_MODELS)}")
    x, tx, T_ = floats(frequency, recency, T)
    _check_purchases(x, tx, T_)
    time_scale = max(float(T_.mean()), 1e-9)
    scales = np.array([1.0, time_scale, 1.0, 1.0])
    no_dropout = nbd or _maximise("nbd", _NBD_PARAMS, _nbd_ll, [x, tx, T_], scales[:2], x.size)
    if model == "nbd":
        return no_dropout
    names = PARETO_PARAMS if model == "pnbd" else PURCHASE_PARAMS
    if model == "pnbd":  # beta, like alpha, is a time scale
        scales = np.array([1.0, time_scale, 1.0, time_scale])
    # The search starts from the NBD's r and alpha (the model with dropout fading out is the
    # NBD) and a dropout of the order of the data's: fewer steps than from 1, 1, 1, 1.
    nbd_start = np.log(np.array([no_dropout["r"], no_dropout["alpha"]]) / scales[:2])
    return _maximise(
        model, names, _PURCHASE_LL[model], [x, tx, T_], scales, x.size,
        no_dropout.log_likelihood, _fading(model, T_), np.array([*nbd_start, 0.0, 0.0]),
    )  # fmt: skip


# Where Pareto/NBD's dropout fades out (s/beta -> 0, beta -> infinity) its likelihood is the
# NBD's, the search crawls along a flat ridge towards a bound, and the hypergeometric terms cost
# 100 times more out there. The search stops once fewer than this share of customers would
# drop out over the data's average span. (BG/NBD's ridge, a -> 0, is cheap to follow with
# exact gradients, and its optimum can lie near it: its search runs to the end.)
FADED: Final = 1e-3


def _fading(model: str, T: Array) -> Callable[[Array], str | None] | None:
    if model != "pnbd":
        return None
    mean_age = float(T.mean())

    def stop(params: Array) -> str | None:
        rate = params[2] / params[3]  # the mean dropout rate s/beta per time unit
        if rate * mean_age < FADED:
            return (
                f"the dropout fades out (s/beta = {rate:.2g} per time unit: fewer than 1 "
                "customer in 1,000 would drop out): the model is the NBD"
            )
        return None

    return stop


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Fit:
    """BG/NBD by maximum likelihood: `r`, `alpha`, `a`, `b`, `log_likelihood`."""
    return fit_purchases("bgnbd", frequency, recency, T)


def fit_mbgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Fit:
    """Modified BG/NBD by maximum likelihood: `r`, `alpha`, `a`, `b`, `log_likelihood`."""
    return fit_purchases("mbgnbd", frequency, recency, T)


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike) -> Fit:
    """Gamma-Gamma spend model by maximum likelihood: `p`, `q`, `v`, `log_likelihood`.

    Fitted on the customers with a repeat purchase and a positive mean spend (the model's
    support); others are left out, and the count used is `customers`.
    """
    x, m = floats(frequency, monetary_value)
    if x.size != m.size:
        raise InputError("frequency and monetary_value must have the same length")
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size < 3:
        raise InputError("Gamma-Gamma needs at least 3 customers with a repeat purchase")
    scales = np.array([1.0, 1.0, float(np.mean(m))])
    return _maximise("gamma_gamma", ("p", "q", "v"), _gamma_gamma_ll, [x, m], scales, x.size)

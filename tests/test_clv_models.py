"""The CLV models on public numbers (CDNOW, Fader, Hardie and Lee 2005) and on LGS's data."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lgs_fast.config import Options
from lgs_fast.engines import duckdb as sql
from lgs_fast.engines import polars as metrics
from lgs_fast.lake import scan
from lgs_fast.models import clv, clv_fit
from lgs_fast.schema import POLARS_SCHEMA
from tests.conftest import TEST_DATA, data_file

CDNOW = TEST_DATA / "cdnow"
CALIBRATION_END = dt.date(1997, 10, 1)  # first day of the holdout: 39 weeks after 1997-01-01
HOLDOUT_TOLERANCE = 0.05  # cumulative repeat purchases, relative, every week of the holdout


def cdnow_lines() -> pl.LazyFrame:
    """CDNOW_sample.txt as canonical invoice lines: one line per transaction, at midnight."""
    rows = [line.split() for line in data_file(CDNOW / "CDNOW_sample.txt").read_text().splitlines()]
    return pl.DataFrame(
        {
            "invoice_no": [str(i) for i in range(len(rows))],
            "stock_code": "CD", "description": None, "quantity": 1,
            "invoice_date": [dt.datetime.strptime(r[2], "%Y%m%d") for r in rows],
            "unit_price": [float(r[4]) for r in rows],
            "customer_id": [int(r[1]) for r in rows], "country": "US",
        },
        schema=POLARS_SCHEMA,
    ).lazy()  # fmt: skip


def _calibration() -> Options:
    return Options(
        as_of=dt.datetime.combine(CALIBRATION_END, dt.time()) - dt.timedelta(microseconds=1)
    )


@pytest.fixture(scope="module")
def cdnow_summary() -> pl.DataFrame:
    return metrics.clv_summary(cdnow_lines(), _calibration()).collect()


def _weeks(summary: pl.DataFrame) -> pl.DataFrame:
    return summary.select(
        pl.col("customer_id").alias("ID"),
        "frequency",
        recency=(pl.col("recency") / 7).round(2),
        T=(pl.col("T") / 7).round(2),
    )


def test_cdnow_calibration_summary_equals_the_published_one(cdnow_summary: pl.DataFrame) -> None:
    published = pl.read_csv(data_file(CDNOW / "cdnow_customers_summary.csv"))
    assert _weeks(cdnow_summary).equals(published.with_columns(pl.col("ID").cast(pl.Int64)))
    duckdb = sql.query(sql.connect(options=_calibration(), lines=cdnow_lines()), "clv_summary")
    assert duckdb.pl().equals(cdnow_summary)


def test_cdnow_bgnbd_reproduces_fader_hardie_lee() -> None:
    weeks = pl.read_csv(data_file(CDNOW / "cdnow_customers_summary.csv"))
    fit = clv.fit_bgnbd(weeks["frequency"], weeks["recency"], weeks["T"])
    assert {k: round(v, 3) for k, v in fit.items() if k != "log_likelihood"} == {
        "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426,
    }  # fmt: skip
    assert round(fit["log_likelihood"], 1) == -9582.4
    assert fit.identified, fit.problems
    # Standard errors as lifetimes reports them (0.0126, 0.378, 0.186, 0.705).
    assert fit.standard_errors["r"] == pytest.approx(0.01256, rel=0.01)
    assert fit.standard_errors["b"] == pytest.approx(0.7053, rel=0.01)
    assert clv.fit_mbgnbd(weeks["frequency"], weeks["recency"], weeks["T"]).identified


def test_cdnow_pareto_nbd_reproduces_fader_hardie_and_lifetimes() -> None:
    """r = 0.5533, alpha = 10.5780, s = 0.6061, beta = 11.6689, LL = -9594.98 (Fader and Hardie,
    "A note on deriving the Pareto/NBD model", 2005); lifetimes' ParetoNBDFitter gives the same
    probability alive and expected purchases over the 39 weeks of the holdout."""
    lifetimes = pytest.importorskip("lifetimes")
    weeks = pl.read_csv(data_file(CDNOW / "cdnow_customers_summary.csv"))
    x, tx, T = (weeks[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    fit = clv_fit.fit_purchases("pnbd", x, tx, T)
    assert {k: round(v, 2) for k, v in fit.params.items()} == {
        "r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67,
    }  # fmt: skip
    assert round(fit.log_likelihood, 2) == -9594.97
    # The dropout beats no dropout by far, but beta is poorly pinned (standard error 6.2).
    assert fit.problems == ("beta = 11.7 has standard error 6.21",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lifetimes.ParetoNBDFitter().fit(x, tx, T)
    assert fit.params == pytest.approx(theirs.params_.to_dict(), rel=1e-3)
    assert clv.probability_alive(fit, x, tx, T) == pytest.approx(
        theirs.conditional_probability_alive(x, tx, T), abs=1e-4
    )
    assert clv.expected_purchases(fit, 39, x, tx, T) == pytest.approx(
        theirs.conditional_expected_number_of_purchases_up_to_time(39, x, tx, T), abs=1e-3
    )


def test_cdnow_gamma_gamma_reproduces_fader_hardie(cdnow_summary: pl.DataFrame) -> None:
    """p = 6.25, q = 3.74, v = 15.44 on the 946 repeat customers (Fader and Hardie, 2013)."""
    fit = clv_fit.fit_gamma_gamma(cdnow_summary["frequency"], cdnow_summary["monetary_value"])
    assert fit.customers == 946
    assert {k: round(v, 2) for k, v in fit.params.items()} == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert fit.identified


def test_cdnow_78_week_forecast_tracks_the_holdout(cdnow_summary: pl.DataFrame) -> None:
    weeks = _weeks(cdnow_summary)
    fit = clv.fit_bgnbd(weeks["frequency"], weeks["recency"], weeks["T"])
    start = dt.date(1997, 1, 1)
    first = (cdnow_summary["first_purchase"] - start).dt.total_days().to_numpy() / 7
    days = (
        cdnow_lines()
        .select("customer_id", day=pl.col("invoice_date").dt.date())
        .unique()
        .join(cdnow_summary.lazy().select("customer_id", "first_purchase"), on="customer_id")
        .filter(pl.col("day") > pl.col("first_purchase"))
        .collect()
    )
    repeat_week = (days["day"] - start).dt.total_days().to_numpy() / 7
    errors = []
    for week in range(40, 79):
        actual = (repeat_week < week).sum()
        forecast = clv.expected_purchases_new(fit, np.clip(week - first, 0, None)).sum()
        errors.append(forecast / actual - 1)
    assert (repeat_week < 39).sum() == cdnow_summary["frequency"].sum() == 2_457
    assert max(abs(e) for e in errors) < HOLDOUT_TOLERANCE, errors


@pytest.fixture(scope="module")
def lgs_summary(retail_lake: Path) -> pl.DataFrame:
    return metrics.clv_summary(scan(retail_lake)).collect()


def test_lgs_dropout_is_not_identified_so_the_nbd_predicts(lgs_summary: pl.DataFrame) -> None:
    """The shop's customers give no evidence of dropping out for good: both dropout models fail
    the likelihood-ratio test against the NBD nested in them, and the NBD, which fits, gives
    every customer expected purchases and a CLV (probability alive 1, as the model says)."""
    model = clv.fit(lgs_summary)
    for name in ("bgnbd", "mbgnbd", "pnbd"):
        assert not model.purchases[name].identified
        assert any("dropout not identified" in p for p in model.purchases[name].problems)
    # Pareto/NBD's search heads for beta -> infinity, where each step costs 100 times more:
    # it stops once fewer than 1 customer in 1,000 would drop out, at the NBD's likelihood.
    pareto = model.purchases["pnbd"]
    assert pareto.problems[0].startswith("search stopped early: the dropout fades out")
    assert pareto["s"] / pareto["beta"] * lgs_summary["T"].mean() < clv_fit.FADED
    assert pareto.log_likelihood == pytest.approx(model.purchases["nbd"].log_likelihood, abs=1)
    assert all(math.isnan(v) for v in pareto.standard_errors.values())
    assert model.purchases["nbd"].identified and model.used == "nbd"
    assert model.notes == (clv.NBD_NOTE,)
    table = clv.predict(model, lgs_summary)
    assert table.height == 4_339 and table["clv"].null_count() == 0
    assert table["probability_alive"].unique().to_list() == [1.0]
    # E[X(T, T + t)] = (r + x) t / (alpha + T): the posterior mean rate, times t.
    r, alpha = model.purchases["nbd"]["r"], model.purchases["nbd"]["alpha"]
    expected = (r + lgs_summary["frequency"]) * 90 / (alpha + lgs_summary["T"])
    assert table["expected_purchases"].to_list() == pytest.approx(expected.to_list(), rel=1e-12)
    forced = clv.predict(clv.fit(lgs_summary, clv.ClvSettings(model="mbgnbd")), lgs_summary)
    assert forced["clv"].null_count() == 0
    assert "although it does not fit" in " ".join(
        clv.fit(lgs_summary, clv.ClvSettings(model="mbgnbd")).verdicts()
    )


def test_without_a_spend_model_clv_uses_each_customers_own_mean(
    lgs_summary: pl.DataFrame,
) -> None:
    """Gamma-Gamma cannot be fitted (only 2 customers keep a mean spend): CLV is still given to
    every customer, at their own mean spend per purchase day (the others' mean without one),
    and the notes say so."""
    keep = lgs_summary.filter(pl.col("frequency") > 0)["customer_id"].head(2).to_list()
    summary = lgs_summary.with_columns(
        monetary_value=pl.when(pl.col("customer_id").is_in(keep)).then(pl.col("monetary_value"))
    )
    model = clv.fit(summary)
    assert model.used == "nbd" and model.spend_problem is not None
    assert model.notes[-1] == clv.OWN_SPEND_NOTE
    table = clv.predict(model, summary)
    assert table["clv"].null_count() == 0
    own = summary.filter(pl.col("customer_id").is_in(keep))["monetary_value"]
    spend = dict(table.select("customer_id", "expected_spend").iter_rows())
    assert [spend[c] for c in keep] == own.to_list()
    assert spend[table.filter(~pl.col("customer_id").is_in(keep))["customer_id"][0]] == (
        pytest.approx(own.mean(), rel=1e-12)
    )
    months = clv.discounted_purchases(
        model.purchases["nbd"], table["frequency"], table["recency"], table["T"]
    )
    assert table["clv"].to_list() == pytest.approx(
        (table["expected_spend"].to_numpy() * months).tolist(), rel=1e-12
    )


def test_expectation_matrix_draws_what_the_model_in_use_says(
    lgs_summary: pl.DataFrame, cdnow_summary: pl.DataFrame
) -> None:
    """On the shop's data the NBD is used: every cell's probability alive is 1 and expected
    purchases depend on the repeat days alone. On CDNOW (modified BG/NBD), the longer since the last
    purchase, the less likely a repeat customer is still buying, as lifetimes' matrix shows."""
    model = clv.fit(lgs_summary)
    matrix = clv.expectation_matrix(model, lgs_summary)
    assert matrix["age"].unique().to_list() == [373]
    assert matrix["frequency"].max() == 20 and matrix.height == 1 + 20 * 9
    assert matrix["probability_alive"].unique().to_list() == [1.0]
    r, alpha = model.purchases["nbd"]["r"], model.purchases["nbd"]["alpha"]
    assert matrix["expected_purchases"].to_list() == pytest.approx(
        ((r + matrix["frequency"]) * 90 / (alpha + 373)).to_list(), rel=1e-12
    )
    cdnow = clv.fit(cdnow_summary)
    assert cdnow.used == "mbgnbd"  # the highest likelihood of the identified models
    repeat = clv.expectation_matrix(cdnow, cdnow_summary).filter(pl.col("frequency") == 3)
    alive = repeat.sort("days_since_last")["probability_alive"].to_list()
    # 3 repeat days, the last just now: 84% likely still buying; the last 38 weeks ago: 0.5%.
    assert alive[0] == pytest.approx(0.838, abs=0.001)
    assert alive[-1] == pytest.approx(0.0047, abs=0.0001)
    assert alive == sorted(alive, reverse=True)
    none = clv.CustomerModel(cdnow.purchases, cdnow.spend, None)
    assert clv.expectation_matrix(none, cdnow_summary).height == 0


def test_lgs_nbd_holdout(retail_lake: Path) -> None:
    """Calibration to 2011-09-01, 100 days of holdout, 3,317 customers: the NBD predicts 3,634
    purchase days against 4,807 (the autumn peak), MAE 0.997 per customer."""
    calibration = metrics.clv_summary(
        scan(retail_lake).filter(pl.col("invoice_date") < dt.datetime(2011, 9, 1))
    ).collect()
    full = metrics.clv_summary(scan(retail_lake)).collect()
    # The same span before the calibration end: 100 days, from 2011-05-24.
    earlier = metrics.clv_summary(
        scan(retail_lake).filter(pl.col("invoice_date") < dt.datetime(2011, 5, 24))
    ).collect()
    rows = {
        r["model"]: r for r in clv.holdout(calibration, full, earlier)["clv_holdout"].to_dicts()
    }
    nbd = rows["nbd"]
    assert nbd["identified"] and nbd["calibration_customers"] == 3_317
    assert nbd["holdout_days"] == 100 and nbd["actual_purchases"] == 4_807
    assert nbd["predicted_purchases"] == pytest.approx(3_633.9, abs=0.5)
    assert nbd["mae"] == pytest.approx(0.997, abs=0.001)
    assert nbd["rmse"] == pytest.approx(1.630, abs=0.001)
    assert nbd["spearman"] == pytest.approx(0.505, abs=0.001)
    # The tenth of customers the NBD expected most from made 36.4% of the holdout purchases.
    assert nbd["top_decile_share"] == pytest.approx(0.364, abs=0.001)
    # The baseline: each customer's own past pace. The NBD does no better on these data.
    own = rows[clv.OWN_RATE]
    assert own["identified"] is None and own["predicted_purchases"] == pytest.approx(
        3_364.2, abs=0.5
    )
    assert (own["mae"], own["rmse"]) == pytest.approx((0.967, 1.594), abs=0.001)
    # The other baseline: as many purchase days as in the 100 days before (the first purchase
    # counts for customers who started then). Closest in total and RMSE, worst in rank.
    window = rows[clv.EQUAL_WINDOW]
    assert window["predicted_purchases"] == 3_917
    assert (window["mae"], window["rmse"]) == pytest.approx((0.9864, 1.5615), abs=1e-4)
    assert window["spearman"] == pytest.approx(0.457, abs=0.001)
    assert window["spearman"] < nbd["spearman"]
    assert list(rows) == [*clv_fit.PURCHASE_MODELS, clv.OWN_RATE, clv.EQUAL_WINDOW]


def test_lifetimes_agrees_on_lgs_data(lgs_summary: pl.DataFrame) -> None:
    """A second opinion: lifetimes' fits and predictions on the same summary, to 1e-4."""
    lifetimes = pytest.importorskip("lifetimes")
    data = lgs_summary.to_pandas()
    x, tx, T = data["frequency"], data["recency"], data["T"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fitter in (
            ("bgnbd", lifetimes.BetaGeoFitter),
            ("mbgnbd", lifetimes.ModifiedBetaGeoFitter),
        ):
            theirs = fitter().fit(x, tx, T)
            ours = clv_fit.fit_purchases(name, x, tx, T)
            assert ours.params == pytest.approx(theirs.params_.to_dict(), rel=1e-4), name
            assert clv.probability_alive(ours, x, tx, T) == pytest.approx(
                theirs.conditional_probability_alive(x, tx, T), rel=1e-4, abs=1e-6
            )
            assert clv.expected_purchases(ours, 90, x, tx, T) == pytest.approx(
                theirs.conditional_expected_number_of_purchases_up_to_time(90, x, tx, T).to_numpy(),
                rel=1e-4, abs=1e-6,
            )  # fmt: skip
        repeat = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
        gg = lifetimes.GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
        ours_gg = clv_fit.fit_gamma_gamma(x, data["monetary_value"])
        assert ours_gg.params == pytest.approx(gg.params_.to_dict(), rel=1e-4)
        assert clv.expected_spend(ours_gg, repeat["frequency"], repeat["monetary_value"]) == pytest.approx(
            gg.conditional_expected_average_profit(repeat["frequency"], repeat["monetary_value"]).to_numpy(),
            rel=1e-4,
        )  # fmt: skip


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(clv.InputError, match="recency <= T"):
        clv.fit_bgnbd([1, 2], [5, 1], [3, 4])
    with pytest.raises(clv.InputError, match="no customer"):
        clv.fit_bgnbd([], [], [])
    with pytest.raises(clv.InputError, match="--discount"):
        clv.ClvSettings(monthly_discount=1.5)


@pytest.mark.parametrize(
    ("loglik", "params"),
    [
        (clv_fit._bgnbd_ll, [0.5, 8.0, 0.7, 2.5]),
        (clv_fit._mbgnbd_ll, [0.5, 8.0, 0.7, 2.5]),
        (clv_fit._nbd_ll, [0.5, 8.0]),
        (clv_fit._gamma_gamma_ll, [6.0, 3.7, 15.0]),
    ],
    ids=["bgnbd", "mbgnbd", "nbd", "gamma_gamma"],
)
def test_exact_gradients_equal_finite_differences(loglik: object, params: list[float]) -> None:
    """The search trusts these gradients: each equals the central difference of the summed
    log-likelihood to 1e-6 (relative), on varied histories (none, few and many repeat days)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, 3_000).astype(float)
    T = rng.uniform(5, 400, x.size)
    tx = np.where(x > 0, rng.uniform(0, 1, x.size) * T, 0.0)
    columns = [np.maximum(x, 1), rng.uniform(2, 80, x.size)] if len(params) == 3 else [x, tx, T]
    data = clv_fit._Data.of(columns)
    p = np.array(params)

    def total(q: np.ndarray) -> float:
        return float(np.dot(data.weight, loglik(q, data)[0]))  # type: ignore[operator]

    _, gradient = loglik(p, data)  # type: ignore[operator]
    for i in range(p.size):
        step = np.zeros_like(p)
        step[i] = 1e-6 * p[i]
        numeric = (total(p + step) - total(p - step)) / (2 * step[i])
        assert np.dot(data.weight, gradient[i]) == pytest.approx(numeric, rel=1e-6, abs=1e-6)


def test_expected_purchases_with_a_large_a_are_finite() -> None:
    """BG/NBD fitted to the shipped data cut at 2011-09-01 with October's campaign lines: a dropout
    of about 1% with a = 67,454 and b = 5.3 million, where (1 − z)^(a − 1) underflows and the
    2F1 overflows: the expected purchases were NaN, and the CLV matrix's chart stopped the whole
    analysis. Near the NBD (no dropout), they are close to its (r + x) t / (alpha + T)."""
    params = {"r": 0.9535, "alpha": 91.52, "a": 67454.5, "b": 5.2972e6}
    fit = clv_fit.Fit(
        model="bgnbd", params=params,
        log_likelihood=0.0, standard_errors={}, converged=True, customers=1,
    )  # fmt: skip
    x, tx, T = np.array([0.0, 1.0, 5.0]), np.array([0.0, 38.0, 200.0]), np.array([306.0] * 3)
    value = clv.expected_purchases(fit, 90, x, tx, T)
    assert np.all(np.isfinite(value))
    nbd = (params["r"] + x) * 90 / (params["alpha"] + T)
    # With no purchase yet, a BG/NBD customer has not dropped out: almost the NBD's figure;
    # after purchases, alive with probability P(alive) < 1: fewer.
    assert value[0] == pytest.approx(nbd[0], rel=0.02)
    alive = clv.probability_alive(fit, x, tx, T)
    assert np.all(value <= nbd) and value[1:] == pytest.approx((nbd * alive)[1:], rel=0.02)


def test_expected_purchases_at_a_equal_to_one() -> None:
    """The closed form is 0/0 at a = 1; its limit, from 60-digit mpmath: 0.342219347608427."""
    fit = clv_fit.Fit(
        model="bgnbd", params={"r": 0.5, "alpha": 10.0, "a": 1.0, "b": 3.0},
        log_likelihood=0.0, standard_errors={}, converged=True, customers=1,
    )  # fmt: skip
    value = clv.expected_purchases(fit, 90, 5, 100, 200)
    assert value == pytest.approx([0.342219347608427], rel=1e-8)

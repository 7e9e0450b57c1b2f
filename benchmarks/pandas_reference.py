"""The pandas reference: every analysis written the way the LGS notebook did, eagerly, in pandas.

It follows DESIGN.md ("Definitions") independently of lgs_fast's engines: it is the third
opinion in the tests and the baseline in the benchmarks. It deliberately shares no code with
`lgs_fast.engines.polars` or `queries/` beyond the option values (bins, presets, segment rules)
and the lines' schema.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from lgs_fast.config import COMPARE_DAYS, NON_PRODUCT_PATTERN, UNCLASSIFIED, Options
from lgs_fast.schema import COLUMNS, POLARS_SCHEMA, pandas_dtypes

QUANTILES = {"median": 0.5, "p25": 0.25, "p75": 0.75, "p85": 0.85, "p95": 0.95, "p99": 0.99}


def load_lines(lake: str | Path) -> pd.DataFrame:
    """Every line of the lake in memory, as the notebook held them."""
    # The files the manifest names (a lake also keeps the previous version's files).
    manifest = json.loads((Path(lake) / "_manifest.json").read_text())
    files = [
        Path(lake) / "invoice_lines" / key / meta.get("file", "part-0.parquet")
        for key, meta in sorted(manifest["partitions"].items())
    ]
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY.items()})
    return pd.concat(
        (pd.read_parquet(f, columns=list(COLUMNS), dtype_backend="numpy_nullable") for f in files),
        ignore_index=True,
    )


_EMPTY = pandas_dtypes(POLARS_SCHEMA)


def _amount(df: pd.DataFrame) -> pd.Series:
    return df["quantity"].astype("float64") * df["unit_price"].astype("float64")


def _micro_of(df: pd.DataFrame) -> pd.Series:
    """Each line's amount in whole millionths of a pound: money is summed as these integers and
    turned into pounds once (`_pounds`), docs/analysis.md "Money"."""
    return _micro(_amount(df))


def _pounds(micro: pd.Series | int) -> pd.Series | float:
    return micro / 1_000_000


def _cancel(df: pd.DataFrame) -> pd.Series:
    return df["invoice_no"].str.startswith("C").astype(bool)


def _month(dates: pd.Series) -> pd.Series:
    return dates.dt.to_period("M").dt.to_timestamp()


def overview(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    micro, cancel = _micro_of(df), _cancel(df)
    totals = micro.groupby(df["invoice_no"]).sum()
    return pd.DataFrame(
        [
            {
                "lines": len(df),
                "invoices": df["invoice_no"].nunique(),
                "purchase_invoices": df.loc[~cancel, "invoice_no"].nunique(),
                "credit_notes": df.loc[cancel, "invoice_no"].nunique(),
                "customers": df["customer_id"].nunique(),
                "customers_with_purchase": df.loc[~cancel, "customer_id"].nunique(),
                "stock_codes": df["stock_code"].nunique(),
                "countries": df["country"].nunique(),
                "first_invoice": df["invoice_date"].min(),
                "last_invoice": df["invoice_date"].max(),
                "placed_sales": _pounds(micro[~cancel].sum()),
                "cancelled_value": _pounds(micro[cancel].sum()),
                "net_revenue": _pounds(micro.sum()),
                "mean_invoice_total": _pounds(totals[totals > 0]).mean(),
            }
        ]
    )


def invoice_totals(df: pd.DataFrame, options: Options) -> pd.Series:
    """Exact totals in millionths of a pound."""
    if options.preset == "notebook":
        keep = (df["quantity"] > 0) & (df["unit_price"] > 0)
        return _micro_of(df[keep]).reset_index(drop=True)
    placed = df[~_cancel(df)]
    totals = _micro_of(placed).groupby(placed["invoice_no"]).sum()
    return totals[totals > 0].reset_index(drop=True)


def _views(micro: pd.Series) -> dict[str, pd.Series]:
    pounds = _pounds(micro)
    return {"all": micro, "le_p85": micro[pounds <= pounds.quantile(0.85)]}


def _pence(micro: pd.Series) -> pd.Series:
    """Whole pence of millionths, half away from zero."""
    return micro.map(lambda m: (abs(int(m)) + 5_000) // 10_000 * (1 if m >= 0 else -1)).astype(
        "int64"
    )


def _mode(micro: pd.Series) -> float | None:
    if micro.empty:
        return None
    counts = _pence(micro).value_counts()
    return float(counts[counts == counts.max()].index.min()) / 100


def invoice_amounts(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    rows = []
    for view, micro in _views(invoice_totals(df, options)).items():
        v = _pounds(micro)
        rows.append(
            {
                "view": view,
                "count": len(v),
                "min": v.min(),
                "mean": v.mean(),
                "median": v.quantile(0.5),
                "mode": _mode(micro),
                "max": v.max(),
                **{k: v.quantile(q) for k, q in QUANTILES.items() if k != "median"},
            }
        )
    return pd.DataFrame(rows)


def invoice_histogram(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    bins = options.histogram_bins
    frames = []
    for view, micro in _views(invoice_totals(df, options)).items():
        if micro.empty:
            continue
        pence = _pence(micro)
        lo, span = int(pence.min()), int(pence.max() - pence.min())
        index = np.minimum((pence - lo) * bins // span, bins - 1) if span > 0 else pence * 0
        counts = index.value_counts().reindex(range(bins), fill_value=0)
        b = np.arange(bins)
        frames.append(
            pd.DataFrame(
                {
                    "view": view,
                    "bin": b,
                    # edges in whole millionths, rounded half up (docs/analysis.md)
                    "bin_start": [
                        (lo * 10_000 + (span * k * 10_000 + bins // 2) // bins) / 1e6 for k in b
                    ],
                    "bin_end": [
                        (lo * 10_000 + (span * (k + 1) * 10_000 + bins // 2) // bins) / 1e6
                        for k in b
                    ],
                    "count": counts.to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _complete(months: pd.Series, df: pd.DataFrame) -> pd.Series:
    """Whether the data covers each month (a month start) from its first to its last day."""
    first, last = df["invoice_date"].min(), df["invoice_date"].max()
    first_month, last_month = (
        first.to_period("M").to_timestamp(),
        last.to_period("M").to_timestamp(),
    )
    starts = (months > first_month) | (first.day == 1)
    ends = (months < last_month) | last.is_month_end
    return (starts & ends).astype(bool)


def monthly(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    d = df.assign(month=_month(df["invoice_date"]), micro=_micro_of(df), cancel=_cancel(df))
    placed, cancelled = d[~d["cancel"]], d[d["cancel"]]
    out = pd.DataFrame(
        index=pd.date_range(d["month"].min(), d["month"].max(), freq="MS", name="month")
    )
    out["placed_orders"] = placed.groupby("month")["invoice_no"].nunique()
    out["cancelled_orders"] = cancelled.groupby("month")["invoice_no"].nunique()
    out["placed_lines"] = placed.groupby("month").size()
    out["cancelled_lines"] = cancelled.groupby("month").size()
    out["sales"] = _pounds(placed.groupby("month")["micro"].sum())
    out["active_customers"] = d.groupby("month")["customer_id"].nunique()
    first = d.dropna(subset=["customer_id"]).groupby("customer_id")["month"].min()
    out["new_customers"] = first.value_counts()
    out = out.fillna(0)
    previous = out["sales"].shift(1)
    out["sales_growth_pct"] = (100 * (out["sales"] / previous - 1)).where(previous != 0)
    out["existing_customers"] = out["active_customers"] - out["new_customers"]
    if options.preset != "notebook" and len(out):
        # Nobody's history is known in the first month: new and existing are unknown there.
        out.loc[out.index[0], ["new_customers", "existing_customers"]] = np.nan
    out = out.reset_index()
    out["yyyymm"] = out["month"].dt.year * 100 + out["month"].dt.month
    out["complete"] = _complete(out["month"], df)
    return out[
        [
            "month", "yyyymm", "placed_orders", "cancelled_orders", "placed_lines",
            "cancelled_lines", "sales", "sales_growth_pct", "active_customers",
            "new_customers", "existing_customers", "complete",
        ]
    ]  # fmt: skip


def weekly_sales(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    d = df.assign(
        week=df["invoice_date"].dt.to_period("W-SUN").dt.start_time,
        micro=_micro_of(df),
        cancel=_cancel(df),
    )
    weeks = (
        pd.date_range(d["week"].min(), d["week"].max(), freq="7D", name="week")
        if len(d)
        else pd.DatetimeIndex([], name="week")
    )
    out = pd.DataFrame(index=weeks)
    out["net_revenue"] = _pounds(d.groupby("week")["micro"].sum())
    out["placed_sales"] = _pounds(d[~d["cancel"]].groupby("week")["micro"].sum())
    out["invoices"] = d.groupby("week")["invoice_no"].nunique()
    out = out.fillna(0).reset_index()
    # A week is complete when the data runs from its Monday (first week) to its Sunday (last).
    first, last = df["invoice_date"].min(), df["invoice_date"].max()
    starts = (out["week"] > out["week"].min()) | (first.day_of_week == 0)
    ends = (out["week"] < out["week"].max()) | (last.day_of_week == 6)
    out["complete"] = (starts & ends).astype(bool)
    return out[["week", "net_revenue", "placed_sales", "invoices", "complete"]]


def _score_bin(x: pd.Series, options: Options) -> pd.Series:
    """qcut's bins, except that repeated edges do not raise: 1 + edges strictly below x.

    x holds integers (days, ranks, pence); each edge is the linear-interpolated quantile as an
    exact fraction, so no value can fall on the wrong side of an edge it sits on.
    """
    values = np.sort(x.to_numpy(dtype="int64"))
    n = len(values)
    bins = pd.Series(1, index=x.index, dtype="int64")
    for k in range(1, options.bins if n else 1):
        position = Fraction(k * (n - 1), options.bins)
        i = math.floor(position)
        lo, hi = int(values[i]), int(values[min(i + 1, n - 1)])
        edge = lo + (position - i) * (hi - lo)
        bins += x.to_numpy(dtype="int64") * edge.denominator > edge.numerator
    return bins


def _segment(rf: pd.Series, options: Options) -> pd.Series:
    def name(code: str) -> str:
        for rule in options.rules:
            if re.fullmatch(rule.pattern, code):
                return rule.name
        return UNCLASSIFIED

    return rf.map(name)


def rfm(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    if options.as_of is not None:
        df = df[df["invoice_date"] <= options.as_of]
    customers = df.dropna(subset=["customer_id"]).assign(micro=_micro_of, cancel=_cancel)
    if options.preset == "notebook":
        t = options.as_of or customers["invoice_date"].max()
        g = customers.groupby("customer_id").agg(
            last=("invoice_date", "max"),
            frequency=("invoice_no", "size"),
            micro=("micro", "sum"),
        )
    else:
        t = options.as_of or df["invoice_date"].max()
        purchases = customers[~customers["cancel"]]
        g = purchases.groupby("customer_id").agg(
            last=("invoice_date", "max"), frequency=("invoice_no", "nunique")
        )
        g["micro"] = customers.groupby("customer_id")["micro"].sum().reindex(g.index)
    g["monetary"] = _pounds(g["micro"])
    g["recency"] = (pd.Timestamp(t) - g["last"]) // pd.Timedelta(days=1)
    g = g.reset_index().sort_values(["frequency", "customer_id"])
    g["f_rank"] = np.arange(1, len(g) + 1)
    g["r_score"] = options.bins + 1 - _score_bin(g["recency"], options)
    g["f_score"] = _score_bin(g["f_rank"], options)
    # Money is scored in whole pence (half away from zero), as both engines score it.
    g["m_score"] = _score_bin(_pence(g["micro"]), options)
    digits = g[["r_score", "f_score", "m_score"]].astype(str)
    g["rfm_score"] = digits["r_score"] + digits["f_score"] + digits["m_score"]
    g["segment"] = _segment(digits["r_score"] + digits["f_score"], options)
    lines = customers.groupby(["customer_id", "country"]).size().rename("n").reset_index()
    country = (
        lines.sort_values(["customer_id", "n", "country"], ascending=[True, False, True])
        .drop_duplicates("customer_id")
        .set_index("customer_id")["country"]
    )
    g["country"] = g["customer_id"].map(country)
    return g.sort_values("customer_id")[
        [
            "customer_id", "country", "recency", "frequency", "monetary",
            "r_score", "f_score", "m_score", "rfm_score", "segment",
        ]
    ]  # fmt: skip


def segments(table: pd.DataFrame, options: Options) -> pd.DataFrame:
    names: dict[str, tuple[int, str]] = {}
    for rule in options.rules:
        names.setdefault(rule.name, (rule.priority, rule.action))
    g = table.groupby("segment").agg(
        customers=("customer_id", "size"),
        mean_recency=("recency", "mean"),
        mean_frequency=("frequency", "mean"),
        mean_monetary=("monetary", "mean"),
        total_monetary=("monetary", "sum"),
    )
    rows = []
    for segment in sorted(set(names) | set(g.index), key=lambda s: (names.get(s, (10_000,))[0], s)):
        stats = g.loc[segment] if segment in g.index else None
        customers = int(stats["customers"]) if stats is not None else 0
        rows.append(
            {
                "segment": segment,
                "customers": customers,
                "share": customers / len(table) if len(table) else None,
                "mean_recency": stats["mean_recency"] if stats is not None else None,
                "mean_frequency": stats["mean_frequency"] if stats is not None else None,
                "mean_monetary": stats["mean_monetary"] if stats is not None else None,
                "total_monetary": stats["total_monetary"] if stats is not None else 0.0,
                "action": names.get(segment, (0, ""))[1],
            }
        )
    # Largest total net spend first, empty segments last by name (DESIGN.md's one order).
    rows.sort(key=lambda r: (r["customers"] == 0, -r["total_monetary"], r["segment"]))
    return pd.DataFrame(rows)


def _reference_time(df: pd.DataFrame, options: Options) -> pd.Timestamp:
    """RFM's T: as_of, else the latest line (notebook: the latest line with a customer)."""
    if options.as_of is not None:
        return pd.Timestamp(options.as_of)
    dated = df[df["customer_id"].notna()] if options.preset == "notebook" else df
    return dated["invoice_date"].max()


def segment_movement(df: pd.DataFrame, options: Options, now: pd.DataFrame) -> pd.DataFrame:
    """Each customer of `now` (rfm at T) with its segment at T0 (compare_as_of, else 90 days
    before T, at most T): RFM at T0 is RFM with as_of = T0; a customer it lacks is `new`."""
    t = _reference_time(df, options)
    if options.compare_as_of is not None:
        t0 = min(pd.Timestamp(options.compare_as_of), t)
    else:
        t0 = t - pd.Timedelta(days=COMPARE_DAYS)
    then = now.iloc[:0] if pd.isna(t) else rfm(df, replace(options, as_of=t0, compare_as_of=None))
    out = now[["customer_id", "segment"]].merge(
        then[["customer_id", "segment"]].rename(columns={"segment": "segment_then"}),
        on="customer_id",
        how="left",
    )
    new = out["segment_then"].isna()
    out["segment_then"] = out["segment_then"].where(~new, "new")
    moved = out["segment_then"].astype(str) + " → " + out["segment"].astype(str)
    out["movement"] = moved.where(out["segment_then"] != out["segment"], "same").where(~new, "new")
    return out.sort_values("customer_id")[["customer_id", "segment_then", "segment", "movement"]]


def segment_transitions(movement: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """Customers and their net spend at T per (segment_then, segment)."""
    spent = movement.merge(now[["customer_id", "monetary"]], on="customer_id")
    g = spent.groupby(["segment_then", "segment"], as_index=False).agg(
        customers=("customer_id", "size"), net_revenue=("monetary", "sum")
    )
    return g.sort_values(["segment_then", "segment"])


def top_countries(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    placed = df[~_cancel(df)].assign(micro=_micro_of)
    g = placed.groupby("country", dropna=False).agg(
        micro=("micro", "sum"),
        orders=("invoice_no", "nunique"),
        customers=("customer_id", "nunique"),
    )
    g["sales"] = _pounds(g["micro"])
    g["share"] = g["micro"] / g["micro"].sum()
    g = g.reset_index().sort_values(["micro", "country"], ascending=[False, True]).head(options.top)
    g.insert(0, "rank", np.arange(1, len(g) + 1))
    return g[["rank", "country", "sales", "share", "orders", "customers"]]


def _names(lines: pd.DataFrame) -> pd.Series:
    """Each stock code's most frequent non-null description in `lines`, smallest on ties."""
    named = lines.dropna(subset=["description"])
    counts = named.groupby(["stock_code", "description"]).size().rename("n").reset_index()
    return (
        counts.sort_values(["stock_code", "n", "description"], ascending=[True, False, True])
        .drop_duplicates("stock_code")
        .set_index("stock_code")["description"]
    )


def top_products(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    products = df[~df["stock_code"].str.contains(NON_PRODUCT_PATTERN, regex=True).astype(bool)]
    products = products.assign(micro=_micro_of, cancel=_cancel)
    placed, cancelled = products[~products["cancel"]], products[products["cancel"]]
    g = pd.DataFrame(
        {
            "net_revenue": products.groupby("stock_code")["micro"].sum(),
            "placed_sales": placed.groupby("stock_code")["micro"].sum(),
            "cancelled_value": cancelled.groupby("stock_code")["micro"].sum(),
            "quantity": placed.groupby("stock_code")["quantity"].sum(),
            "purchase_invoices": placed.groupby("stock_code")["invoice_no"].nunique(),
        }
    ).fillna(0)
    g = (
        g.reset_index(names="stock_code")
        .sort_values(["net_revenue", "stock_code"], ascending=[False, True])
        .head(options.top)
    )
    for money in ("net_revenue", "placed_sales", "cancelled_value"):
        g[money] = _pounds(g[money])
    g["description"] = g["stock_code"].map(_names(products))
    g.insert(0, "rank", np.arange(1, len(g) + 1))
    return g[
        [
            "rank", "stock_code", "description", "net_revenue", "placed_sales",
            "cancelled_value", "quantity", "purchase_invoices",
        ]
    ]  # fmt: skip


def _micro(amount: pd.Series) -> pd.Series:
    """Whole millionths of a pound, half away from zero (np.round halves to even)."""
    scaled = amount.to_numpy("float64", na_value=np.nan) * 1_000_000
    exact = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return pd.Series(exact.astype("int64"), index=amount.index)


def reversed_invoices(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Purchase invoices undone by a credit note of the same customer, at or after them, with the
    negated quantity of every stock code and the negated total to the penny."""
    known = df.dropna(subset=["customer_id"]).assign(micro=_micro_of)
    docs = known.groupby(["invoice_no", "customer_id"]).agg(
        date=("invoice_date", "min"), micro=("micro", "sum")
    )
    docs = docs.reset_index()
    micro = docs["micro"].map(int)
    docs["pence"] = micro.map(lambda m: (abs(m) + 5_000) // 10_000 * (1 if m >= 0 else -1))
    docs["cancel"] = docs["invoice_no"].str.startswith("C").astype(bool)
    invoices = docs[~docs["cancel"]]
    credits = docs[docs["cancel"]].assign(pence=lambda d: -d["pence"])
    pairs = invoices.merge(credits, on=["customer_id", "pence"], suffixes=("", "_credit"))
    pairs = pairs[pairs["date_credit"] >= pairs["date"]]
    wanted = set(pairs["invoice_no"]) | set(pairs["invoice_no_credit"])
    per_code = (
        known[known["invoice_no"].isin(wanted)]
        .groupby(["invoice_no", "stock_code"])["quantity"]
        .sum()
    )
    quantities: dict[str, dict[str, int]] = {}
    for (doc, code), quantity in per_code.items():
        quantities.setdefault(doc, {})[code] = int(quantity)
    matched = [
        row
        for row in pairs.itertuples(index=False)
        if quantities[row.invoice_no]
        == {code: -q for code, q in quantities[row.invoice_no_credit].items()}
    ]
    columns = ["invoice_no", "credit_note", "customer_id", "invoice_date", "credit_date", "total"]
    rows = pd.DataFrame(
        [
            (r.invoice_no, r.invoice_no_credit, r.customer_id, r.date, r.date_credit, r.micro)
            for r in matched
        ],
        columns=columns,
    )
    # Each credit note takes its latest invoice; each invoice keeps its earliest credit note.
    rows = rows.sort_values(["invoice_date", "invoice_no"], ascending=False).drop_duplicates(
        "credit_note"
    )
    rows = rows.sort_values(["credit_date", "credit_note"]).drop_duplicates("invoice_no")
    rows["total"] = rows["total"].map(int) / 1_000_000
    return rows.sort_values(["total", "invoice_no"], ascending=[False, True])[columns]


def cohorts(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    known = df.dropna(subset=["customer_id"])
    active = pd.DataFrame(
        {"customer_id": known["customer_id"], "month": _month(known["invoice_date"])}
    ).drop_duplicates()
    active["cohort"] = active.groupby("customer_id")["month"].transform("min")

    def index(s: pd.Series) -> pd.Series:
        return s.dt.year * 12 + s.dt.month

    active["months_since"] = index(active["month"]) - index(active["cohort"])
    sizes = active[active["months_since"] == 0].groupby("cohort").size()
    kept = active.groupby(["cohort", "months_since"]).size()
    last = index(active["month"]).max()
    rows = []
    for cohort, size in sizes.items():
        for k in range(int(last - (cohort.year * 12 + cohort.month)) + 1):
            n = int(kept.get((cohort, k), 0))
            rows.append(
                {
                    "cohort": cohort,
                    "cohort_yyyymm": cohort.year * 100 + cohort.month,
                    "months_since": k,
                    "cohort_size": int(size),
                    "customers": n,
                    "retention": n / size,
                    "activity": cohort + pd.DateOffset(months=k),
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["complete"] = _complete(out.pop("activity"), df)
    return out


def data_quality(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    cancel = _cancel(df)
    counts = {
        "lines": len(df),
        "no_customer_id": int(df["customer_id"].isna().sum()),
        "no_description": int(df["description"].isna().sum()),
        "cancellation_lines": int(cancel.sum()),
        "cancelled_invoices": df.loc[cancel, "invoice_no"].nunique(),
        "stock_adjustment_lines": int(((df["quantity"] < 0) & ~cancel).sum()),
        "zero_price_lines": int((df["unit_price"] == 0).sum()),
        "negative_price_lines": int((df["unit_price"] < 0).sum()),
        "non_product_lines": int(df["stock_code"].str.contains(NON_PRODUCT_PATTERN).sum()),
        "exact_duplicate_lines": int(df.duplicated().sum()),
    }
    return pd.DataFrame({"check": list(counts), "count": list(counts.values())})


def clv_summary(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Per customer with a purchase: frequency, recency and T in days, mean repeat-day spend."""
    if options.as_of is not None:
        df = df[df["invoice_date"] <= options.as_of]
    t = _reference_time(df, options)
    purchases = df[df["customer_id"].notna() & ~_cancel(df)]
    days = (
        purchases.assign(day=purchases["invoice_date"].dt.normalize(), micro=_micro_of(purchases))
        .groupby(["customer_id", "day"], as_index=False)["micro"]
        .sum()
        .sort_values(["customer_id", "day"])
    )
    g = days.groupby("customer_id").agg(
        first_purchase=("day", "min"),
        last_purchase=("day", "max"),
        frequency=("day", "size"),
        micro=("micro", "sum"),
        first_micro=("micro", "first"),
    )
    g["frequency"] -= 1
    g["recency"] = (g["last_purchase"] - g["first_purchase"]).dt.days
    end = pd.NaT if pd.isna(t) else pd.Timestamp(t).normalize()  # NaT: no customer at all
    g["T"] = (end - g["first_purchase"]).dt.days
    repeat = (g["micro"] - g["first_micro"]) / 1_000_000
    g["monetary_value"] = (repeat / g["frequency"]).where(g["frequency"] > 0)
    g["first_purchase"] = g["first_purchase"].dt.date
    g["last_purchase"] = g["last_purchase"].dt.date
    return g.reset_index()[
        ["customer_id", "first_purchase", "last_purchase", "frequency", "recency", "T",
         "monetary_value"]
    ]  # fmt: skip


def _purchase_lines(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Purchase lines with quantity > 0 and a product code, none after as_of."""
    if options.as_of is not None:
        df = df[df["invoice_date"] <= options.as_of]
    product = ~df["stock_code"].str.contains(NON_PRODUCT_PATTERN).fillna(False).astype(bool)
    return df[df["customer_id"].notna() & ~_cancel(df) & (df["quantity"] > 0) & product]


def customer_products(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Per (customer, product) of the purchase lines with quantity > 0 and a product code:
    purchase invoices holding it, the day of the latest, and whether the customer's last
    purchase invoice (latest date, then greatest number) holds it."""
    columns = ["customer_id", "stock_code", "invoices", "last_purchase", "on_last_invoice"]
    if not options.recommend_segments:
        return pd.DataFrame(columns=columns)
    invoices = df[df["customer_id"].notna() & ~_cancel(df)]
    if options.as_of is not None:
        invoices = invoices[invoices["invoice_date"] <= options.as_of]
    last = (
        invoices.sort_values(["customer_id", "invoice_date", "invoice_no"])
        .groupby("customer_id")["invoice_no"]
        .last()
        .rename("last_invoice")
    )
    lines = _purchase_lines(df, options).join(last, on="customer_id")
    lines = lines.assign(on_last=lines["invoice_no"] == lines["last_invoice"])
    g = lines.groupby(["customer_id", "stock_code"]).agg(
        invoices=("invoice_no", "nunique"),
        last_purchase=("invoice_date", "max"),
        on_last_invoice=("on_last", "any"),
    )
    g["last_purchase"] = g["last_purchase"].dt.date
    return g.reset_index()[columns]


def product_names(df: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Every product of customer_products with its most frequent description over the same
    lines (smallest on ties)."""
    if not options.recommend_segments:
        return pd.DataFrame(columns=["stock_code", "description"])
    lines = _purchase_lines(df, options)
    codes = pd.DataFrame({"stock_code": sorted(lines["stock_code"].unique())})
    codes["description"] = codes["stock_code"].map(_names(lines))
    return codes


def recommendations(
    products: pd.DataFrame,
    names: pd.DataFrame,
    table: pd.DataFrame,
    options: Options,
    *,
    neighbours: int | None = None,
    profile: int | None = None,
) -> pd.DataFrame:
    """The recommendation model of DESIGN.md written again with pandas and scipy.sparse: the
    customers × products matrix from a pivot, each step's choices made by sorting frames."""
    from scipy import sparse

    from lgs_fast.models.recommend import BM25_B, BM25_K1, NEIGHBOURS, PROFILE

    neighbours = NEIGHBOURS if neighbours is None else neighbours
    profile = PROFILE if profile is None else profile

    columns = ["customer_id", "segment", "kind", "rank", "stock_code", "description", "score"]
    targets = table.loc[
        table["segment"].isin(options.recommend_segments), ["customer_id", "segment"]
    ]
    targets = targets[targets["customer_id"].isin(products["customer_id"])]
    if targets.empty:
        return pd.DataFrame(columns=columns)
    customers = np.sort(products["customer_id"].unique())
    codes = np.sort(products["stock_code"].unique())
    row = np.searchsorted(customers, products["customer_id"])
    col = np.searchsorted(codes, products["stock_code"])
    counts = products["invoices"].to_numpy(dtype=np.float64)
    x = sparse.csr_matrix((counts, (row, col)), shape=(len(customers), len(codes)))
    sellers = pd.Series(np.bincount(col, weights=counts, minlength=len(codes)), index=codes)
    n = options.recommendations

    def best(frame: pd.DataFrame, by: str) -> pd.DataFrame:
        """Each customer's n best of `frame` by `by`, then best seller, then stock_code."""
        frame = frame.assign(sellers=frame["stock_code"].map(sellers))
        frame = frame.sort_values(
            ["customer_id", by, "sellers", "stock_code"], ascending=[True, False, False, True]
        )
        frame = frame.groupby("customer_id").head(n).copy()
        frame["rank"] = frame.groupby("customer_id").cumcount() + 1
        return frame

    own = products[products["customer_id"].isin(targets["customer_id"])]
    reorder = best(own.assign(score=own["invoices"].astype(float)), "score")
    # BM25 weights, customers as documents.
    tf = pd.DataFrame({"row": row, "col": col, "tf": counts})
    holders = tf.groupby("col")["row"].count()
    idf = np.log(len(customers) / holders)
    length = tf.groupby("row")["tf"].sum()
    norm = (1 - BM25_B) + BM25_B * length / length.mean()
    tf["w"] = (
        tf["tf"] * (BM25_K1 + 1) / (BM25_K1 * tf["row"].map(norm) + tf["tf"])
        * tf["col"].map(idf)
    )  # fmt: skip
    tf = tf.sort_values(["row", "w", "col"], ascending=[True, False, True])
    tf = tf[tf.groupby("row").cumcount() < profile]
    w = sparse.csr_matrix((tf["w"], (tf["row"], tf["col"])), shape=x.shape)
    sim = (w.T.tocsr() @ w).tocoo()
    pairs = pd.DataFrame({"a": sim.row, "p": sim.col, "s": sim.data})
    pairs = pairs[(pairs["a"] != pairs["p"]) & (pairs["s"] > 0)]
    pairs = pairs.sort_values(["a", "s", "p"], ascending=[True, False, True])
    pairs = pairs[pairs.groupby("a").cumcount() < neighbours]
    s = sparse.csr_matrix((pairs["s"], (pairs["a"], pairs["p"])), shape=(len(codes),) * 2)
    rows = np.searchsorted(customers, np.sort(targets["customer_id"].to_numpy()))
    scores = (x[rows] @ s).toarray()
    scores[x[rows].toarray() > 0] = 0
    top = scores.max(axis=1, keepdims=True)
    scores = np.round(scores / np.where(top > 0, top, 1), 9)
    r, c = np.nonzero(scores > 0)
    new = best(
        pd.DataFrame(
            {"customer_id": customers[rows[r]], "stock_code": codes[c], "score": scores[r, c]}
        ),
        "score",
    )
    kinds = pd.concat([reorder.assign(kind="reorder", k=0), new.assign(kind="new", k=1)])
    kinds = kinds.merge(targets, on="customer_id").merge(names, on="stock_code", how="left")
    return kinds.sort_values(["customer_id", "k", "rank"])[columns]


def run_all(df: pd.DataFrame, options: Options) -> dict[str, pd.DataFrame]:
    """Every table, as `lgs-fast analyze` writes them."""
    table = rfm(df, options)
    movement = segment_movement(df, options, table)
    return {
        "overview": overview(df, options),
        "invoice_amounts": invoice_amounts(df, options),
        "invoice_histogram": invoice_histogram(df, options),
        "monthly": monthly(df, options),
        "rfm": table,
        "segments": segments(table, options),
        "segment_movement": movement,
        "segment_transitions": segment_transitions(movement, table),
        "top_countries": top_countries(df, options),
        "top_products": top_products(df, options),
        "reversed_invoices": reversed_invoices(df, options),
        "cohorts": cohorts(df, options),
        "data_quality": data_quality(df, options),
        "clv_summary": clv_summary(df, options),
        "customer_products": customer_products(df, options),
        "product_names": product_names(df, options),
        "weekly_sales": weekly_sales(df, options),
    }

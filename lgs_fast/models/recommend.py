"""Recommendations for the customers of the target segments (DESIGN.md "Recommendations").

The engines aggregate `customer_products` (per customer and product: the purchase invoices
holding it, the day of the latest, whether the last purchase invoice holds it) and
`product_names`; this model does the rest, on the driver, with sparse linear algebra:

- **reorder**: the customer's own products, most purchase invoices first, then the best sellers
  (purchase invoices over all customers), then stock_code; score = the customer's purchase
  invoices holding it. LGS's customers are wholesalers: most of a next order is what they
  ordered before.
- **new** (new to the customer): products they have not bought, scored by an item-item model
  over the customers × products matrix X of purchase invoices. X is weighted by BM25 (customers
  as documents, K1 = 100, B = 0.8, as implicit's `bm25_weight`, idf never negative: `bm25`;
  implicit's BM25Recommender takes products as documents, which does half as well here),
  the similarity of two products is the dot product of their weighted columns, each product
  keeps its `NEIGHBOURS` most similar others, and score(c, p) = Σ over c's products a of
  X[c, a] · sim(a, p). The score is shown
  relative to the customer's best (1 = their strongest new product), rounded to 9 decimals so
  that ties do not hang on the order of floating-point additions; ties by best seller, then
  stock_code.

The similarity counts each customer's `PROFILE` strongest products (by BM25 weight) only: its
cost is the sum over customers of the square of their products, which a few customers with
thousands of products would dominate. Every choice was measured by `holdout` on the shipped
data (docs/models.md). The result is deterministic for a given table: the matrix is
built in canonical order, whatever order the engine returned its rows in.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import polars as pl

from lgs_fast.config import RECOMMENDATION_KINDS, Options

if TYPE_CHECKING:
    from scipy import sparse

KINDS: Final = RECOMMENDATION_KINDS

# BM25 weighting of the customers × products matrix: implicit's `bm25_weight` defaults, which did
# best of the values tried on the shipped data's holdout (K1 from 1.2 to 100, B 0.5 to 0.95).
BM25_K1: Final = 100.0
BM25_B: Final = 0.8
# Most similar products kept per product, and strongest products per customer counted in the
# similarity. On the shipped data's holdout, 20 to all neighbours and 50 to all products gave
# 17.4-19.8% of customers (these two: 19.8%, the best of that grid); they keep the similarity's
# cost bounded at any size.
NEIGHBOURS: Final = 50
PROFILE: Final = 100
# Target customers scored at a time: a block of scores is dense (customers × products).
_BLOCK: Final = 1024
# Cells of a dense block of the similarity (float64: 32 MiB; its temporaries are as large).
_CELLS: Final = 1 << 22
_THREADS: Final = 2
_DECIMALS: Final = 9

RECOMMENDATIONS_SCHEMA: Final = pl.Schema(
    {
        "customer_id": pl.Int64,
        "segment": pl.String,
        "kind": pl.String,
        "rank": pl.Int64,
        "stock_code": pl.String,
        "description": pl.String,
        "score": pl.Float64,
    }
)
# What each method picks, in order within each customer, before `_ranked` numbers them.
_PICKS_SCHEMA: Final = pl.Schema(
    {"customer_id": pl.Int64, "stock_code": pl.String, "score": pl.Float64}
)
HOLDOUT_SCHEMA: Final = pl.Schema(
    {
        "method": pl.String,
        "customers": pl.Int64,
        "hits": pl.Int64,
        "hit_rate": pl.Float64,
    }
)


@dataclass(frozen=True)
class Matrix:
    """The customers × products matrix of purchase invoices: rows in ascending customer_id,
    columns in ascending stock_code, canonical CSR (the same matrix from any row order)."""

    customers: np.ndarray  # customer_id of each row
    codes: pl.Series  # stock_code of each column
    counts: sparse.csr_matrix  # purchase invoices holding the product (float64)
    sellers: np.ndarray  # per column: purchase invoices over all customers (best sellers)

    def rows(self, customer_ids: np.ndarray) -> np.ndarray:
        """The row of each customer_id (all must be in the matrix)."""
        return np.searchsorted(self.customers, customer_ids)


def matrix(customer_products: pl.DataFrame) -> Matrix:
    """`customer_products` (customer_id, stock_code, invoices, …) as a `Matrix`."""
    from scipy import sparse

    customers = customer_products.get_column("customer_id").unique().sort()
    codes = customer_products.get_column("stock_code").unique().sort()
    # Positions in the sorted customers and codes (an Enum's physical value is the position of
    # its category): far cheaper than ranking millions of strings.
    rows = customers.search_sorted(customer_products.get_column("customer_id")).to_numpy()
    cols = customer_products.get_column("stock_code").cast(pl.Enum(codes)).to_physical().to_numpy()
    values = customer_products.get_column("invoices").cast(pl.Float64).to_numpy()
    shape = (len(customers), len(codes))
    counts = sparse.csr_matrix((values, (rows, cols)), shape=shape)
    counts.sum_duplicates()  # also sorts each row's columns: the canonical form
    sellers = np.bincount(cols, weights=values, minlength=len(codes))
    return Matrix(customers.to_numpy(), codes, counts, sellers)


def bm25(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """BM25 weights of `counts`, rows as documents, length-normalised by B and saturated by K1
    as implicit's `bm25_weight`, with idf = log(rows / rows holding the column): never negative,
    where implicit's log(rows) − log(1 + rows holding it) is for a product most customers hold
    (and zero for every product of a two-customer lake). Both give the same holdout hits on
    the shipped data."""
    from scipy import sparse

    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    holders = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log(counts.shape[0] / np.maximum(holders, 1))
    length = np.asarray(counts.sum(axis=1)).ravel()
    norm = (1.0 - BM25_B) + BM25_B * length / length.mean()
    tf = counts.data
    data = tf * (BM25_K1 + 1.0) / (BM25_K1 * norm[rows] + tf) * idf[counts.indices]
    return sparse.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)


def strongest(weights: sparse.csr_matrix, keep: int) -> sparse.csr_matrix:
    """`weights` with each row's `keep` largest entries only (ties: the smaller column)."""
    from scipy import sparse

    lengths = np.diff(weights.indptr)
    kept = np.ones(weights.nnz, dtype=bool)
    # Row by row, the long ones only: a partition is linear in the row (a sort of all their
    # entries took ten times as long at 10M lines: 1.8 s), and columns are in order within a
    # row, so the first entries equal to the bar are the smallest columns.
    for row in np.flatnonzero(lengths > keep):
        start, end = weights.indptr[row], weights.indptr[row + 1]
        values = weights.data[start:end]
        bar = np.partition(values, len(values) - keep)[len(values) - keep]
        drop = values < bar
        room = keep - np.count_nonzero(values > bar)
        drop[np.flatnonzero(values == bar)[room:]] = True
        kept[start:end] = ~drop
    if kept.all():
        return weights
    indptr = np.concatenate([[0], np.cumsum(np.minimum(lengths, keep))])
    return sparse.csr_matrix(
        (weights.data[kept], weights.indices[kept], indptr), shape=weights.shape
    )


def _strongest_dense(block: np.ndarray, keep: int) -> np.ndarray:
    """A dense block with each row's `keep` largest positive entries only, the rest 0 (ties: the
    smaller column)."""
    width = block.shape[1]
    if width <= keep:
        return block
    bar = np.partition(block, width - keep, axis=1)[:, width - keep : width - keep + 1]
    chosen = block >= bar
    # Where more entries equal the bar than places are left, the smallest columns take them.
    extra = np.flatnonzero(np.count_nonzero(chosen, axis=1) > keep)
    if len(extra):
        rows = chosen[extra]
        tied = block[extra] == bar[extra]
        room = keep - np.count_nonzero(rows & ~tied, axis=1, keepdims=True)
        chosen[extra] = (rows & ~tied) | (tied & (np.cumsum(tied, axis=1) <= room))
    return np.where(chosen & (block > 0), block, 0.0)


def similarity(
    m: Matrix, *, neighbours: int = NEIGHBOURS, profile: int = PROFILE
) -> sparse.csr_matrix:
    """Products × products: row a holds a's `neighbours` most similar other products, by the
    dot product of their BM25-weighted columns over the customers' `profile` strongest
    products. Computed a block of rows at a time (dense: at 10M lines nine in ten pairs of
    products share a customer), so memory stays near `_CELLS` cells whatever the catalogue."""
    from scipy import sparse

    weighted = strongest(bm25(m.counts), profile)
    columns = weighted.T.tocsr()
    products = weighted.shape[1]
    step = max(1, _CELLS // max(products, 1))

    def rows(start: int) -> sparse.csr_matrix:
        block = (columns[start : start + step] @ weighted).toarray()
        block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 0.0
        return sparse.csr_matrix(_strongest_dense(block, neighbours))

    # Blocks on two threads: numpy's partition, most of the time, runs without the interpreter
    # lock (measured on the shipped data: 1.1 s of the 1.9 s of two fits). Memory: two blocks.
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        blocks = list(pool.map(rows, range(0, products, step)))
    return sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, 0))


def _kth_largest(scores: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest value of each row (with repeats), k below the row's width."""
    if k > 8:
        return np.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k]
    # For a few, taking the largest out k − 1 times reads the block k + 1 times, where a
    # partition takes about ten times as long (1,024 × 3,926 blocks: 5 ms against 50).
    work = scores.copy()
    rows = np.arange(len(work))
    for _ in range(k - 1):
        work[rows, work.argmax(axis=1)] = -np.inf
    return work.max(axis=1, initial=-np.inf)


def _top(
    scores: np.ndarray, sellers: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, score) of each row's `top` best positive scores of a dense block, scores
    relative to the row's best and rounded to `_DECIMALS`: score, then best seller, then column
    (stock_code order); at most `top` per row."""
    width = scores.shape[1]
    best = scores.max(axis=1, initial=0.0)
    if width > top:
        # The top-th best raw score of each row. A score more than two rounding units (relative
        # to the row's best) below it rounds to less than it does, so it cannot be among the
        # top; the few left are rounded and ranked exactly.
        bar = _kth_largest(scores, top)
        slack = 2 * 10.0**-_DECIMALS * best
        row, col = np.nonzero((scores >= (bar - slack)[:, None]) & (scores > 0))
    else:
        row, col = np.nonzero(scores > 0)
    value = np.round(scores[row, col] / best[row], _DECIMALS)
    order = np.lexsort((col, -sellers[col], -value, row))
    row, col, value = row[order], col[order], value[order]
    first = np.searchsorted(row, row)  # rows are sorted: each row's first position
    place = np.arange(len(row)) - first
    chosen = place < top
    return row[chosen], col[chosen], value[chosen]


def new_to_you(
    m: Matrix,
    customer_ids: np.ndarray,
    top: int,
    *,
    neighbours: int = NEIGHBOURS,
    profile: int = PROFILE,
) -> pl.DataFrame:
    """(customer_id, rank, stock_code, score): each customer's `top` products not yet bought,
    by the item-item model (module docstring); customers must be rows of `m`."""
    sim = similarity(m, neighbours=neighbours, profile=profile)
    rows = m.rows(np.sort(customer_ids))
    parts = []
    for start in range(0, len(rows), _BLOCK):
        block = rows[start : start + _BLOCK]
        mine = m.counts[block]
        scores = np.asarray((mine @ sim).todense())
        scores[mine.nonzero()] = 0.0  # not what they bought
        row, col, value = _top(scores, m.sellers, top)
        parts.append(
            pl.DataFrame(
                {
                    "customer_id": m.customers[block[row]],
                    "stock_code": m.codes.gather(col),
                    "score": value,
                },
                schema=_PICKS_SCHEMA,
            )
        )
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=_PICKS_SCHEMA)
    return _ranked(frame)


def reorder(m: Matrix, customer_ids: np.ndarray, top: int) -> pl.DataFrame:
    """(customer_id, rank, stock_code, score): each customer's `top` own products, most purchase
    invoices holding them first (the score), then best seller, then stock_code."""
    rows = m.rows(np.sort(customer_ids))
    mine = m.counts[rows]
    order_rows = np.repeat(np.arange(len(rows)), np.diff(mine.indptr))
    cols, value = mine.indices, mine.data
    order = np.lexsort((cols, -m.sellers[cols], -value, order_rows))
    row, col, value = order_rows[order], cols[order], value[order]
    place = np.arange(len(row)) - np.searchsorted(row, row)
    chosen = place < top
    frame = pl.DataFrame(
        {
            "customer_id": m.customers[rows[row[chosen]]],
            "stock_code": m.codes.gather(col[chosen]),
            "score": value[chosen],
        },
        schema=_PICKS_SCHEMA,
    )
    return _ranked(frame)


def _ranked(picks: pl.DataFrame) -> pl.DataFrame:
    """`picks`, in order within each customer, with rank = 1, 2, … per customer."""
    return picks.select(
        "customer_id",
        rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("customer_id"),
        stock_code="stock_code",
        score="score",
    )


def targets(rfm: pl.DataFrame, options: Options) -> pl.DataFrame:
    """(customer_id, segment) of the customers of `options.recommend_segments`."""
    return rfm.filter(pl.col("segment").is_in(list(options.recommend_segments))).select(
        "customer_id", "segment"
    )


def recommendations(
    customer_products: pl.DataFrame,
    product_names: pl.DataFrame,
    rfm: pl.DataFrame,
    options: Options,
    *,
    neighbours: int = NEIGHBOURS,
    profile: int = PROFILE,
) -> pl.DataFrame:
    """Table `recommendations` (customer_id, segment, kind, rank, stock_code, description,
    score): `options.recommendations` of each kind for every customer of the target segments
    who bought a product, sorted by customer, kind (reorder first) and rank. `neighbours` and
    `profile`: the model's two sizes (module docstring)."""
    chosen = targets(rfm, options)
    if chosen.height == 0 or customer_products.height == 0:
        return pl.DataFrame(schema=RECOMMENDATIONS_SCHEMA)
    m = matrix(customer_products)
    ids = chosen.get_column("customer_id").to_numpy()
    ids = ids[np.isin(ids, m.customers)]
    n = options.recommendations
    picks = [reorder(m, ids, n), new_to_you(m, ids, n, neighbours=neighbours, profile=profile)]
    return (
        pl.concat([p.with_columns(kind=pl.lit(k)) for p, k in zip(picks, KINDS, strict=True)])
        .join(chosen, on="customer_id", how="left")
        .join(product_names, on="stock_code", how="left")
        .sort(pl.col("customer_id"), pl.col("kind").replace_strict(KINDS, range(2)), "rank")
        .select(RECOMMENDATIONS_SCHEMA.names())
        .cast(dict(RECOMMENDATIONS_SCHEMA))  # type: ignore[arg-type]
    )


# A method of the holdout: (matrix, customer ids, how many) → (customer_id, rank, stock_code,
# score), as `reorder`, `new_to_you` and `best_sellers`.
Method = Callable[[Matrix, np.ndarray, int], pl.DataFrame]


def holdout(
    customer_products: pl.DataFrame,
    rfm: pl.DataFrame,
    options: Options,
    *,
    methods: dict[str, Method] | None = None,
) -> pl.DataFrame:
    """Table `recommendation_holdout` (method, customers, hits, hit_rate): how often each kind,
    and the best sellers a customer has not bought, hold a product of the next order.

    Protocol: each customer of the target segments who bought a product before their last
    purchase invoice has that invoice hidden (`on_last_invoice`), and is recommended to from the
    rest (the model refitted without the hidden invoices); a hit is a customer whose hidden
    invoice holds one of their `options.recommendations` products of that method. `methods`,
    other methods to score the same way (the benchmarks' peers), after the three."""
    empty = pl.DataFrame(schema=HOLDOUT_SCHEMA)
    chosen = targets(rfm, options).select("customer_id")
    if chosen.height == 0 or customer_products.height == 0:
        return empty
    hidden_rows = pl.col("customer_id").is_in(chosen.get_column("customer_id").implode())
    hides = pl.col("on_last_invoice") & hidden_rows
    rest = customer_products.with_columns(
        invoices=pl.col("invoices") - hides.cast(pl.Int64)
    ).filter(pl.col("invoices") > 0)
    held = customer_products.filter(hides).select("customer_id", "stock_code")
    ids = rest.filter(hidden_rows).get_column("customer_id").unique().sort().to_numpy()
    if len(ids) == 0:
        return empty
    m = matrix(rest)
    everyone: dict[str, Method] = {
        "reorder": reorder,
        "new": new_to_you,
        "best sellers not yet bought": best_sellers,
        **(methods or {}),
    }
    rows = []
    for name, method in everyone.items():
        picks = method(m, ids, options.recommendations)
        hits = picks.join(held, on=["customer_id", "stock_code"])["customer_id"].n_unique()
        rows.append((name, len(ids), hits, hits / len(ids)))
    return pl.DataFrame(rows, schema=HOLDOUT_SCHEMA, orient="row")


def best_sellers(m: Matrix, customer_ids: np.ndarray, top: int) -> pl.DataFrame:
    """(customer_id, rank, stock_code, score): the baseline, each customer's `top` best sellers
    (purchase invoices over all customers, then stock_code) they have not bought."""
    rows = m.rows(np.sort(customer_ids))
    ranking = np.lexsort((np.arange(len(m.codes)), -m.sellers))
    # At most as many of the best sellers are the customer's own as they have products.
    enough = ranking[: top + int(np.diff(m.counts[rows].indptr).max(initial=0))]
    owned = m.counts[rows][:, enough].toarray() > 0
    place = np.cumsum(~owned, axis=1)
    row, at = np.nonzero(~owned & (place <= top))
    return _ranked(
        pl.DataFrame(
            {
                "customer_id": m.customers[rows[row]],
                "stock_code": m.codes.gather(enough[at]),
                "score": m.sellers[enough[at]],
            },
            schema=_PICKS_SCHEMA,
        )
    )

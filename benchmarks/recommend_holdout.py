"""The recommendations' holdout against the field's own library, on the same table and protocol.

    python -m benchmarks.recommend_holdout [--lake LAKE] [--out benchmarks/results/recommendations]

`lgs_fast.models.recommend.holdout` scores lgs_fast's two kinds and the best-seller baseline;
this adds simpler item-item models (plain co-occurrence counts, cosine) and implicit's item-item
recommenders (BM25 and cosine, K = 200) and ALS (64 factors, fixed seed, one thread), all fitted
on the same customers × products matrix without the hidden invoices, recommending products not
yet bought. Writes holdout.json and holdout.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns, and ALS is slower, without

import numpy as np
import polars as pl
from scipy import sparse

from benchmarks.datasets import REAL_ROWS, lake
from lgs_fast.analyze import compute_tables
from lgs_fast.config import Options
from lgs_fast.models.recommend import Matrix, Method, holdout


def _implicit(make: Callable[[], object]) -> Method:
    """A holdout method from an implicit recommender: fitted on the matrix of purchase invoices,
    recommending `top` products each customer has not bought."""

    def method(m: Matrix, customer_ids: np.ndarray, top: int) -> pl.DataFrame:
        model = make()
        user_items = m.counts.tocsr().astype(np.float32)
        model.fit(user_items, show_progress=False)  # type: ignore[attr-defined]
        rows = m.rows(np.sort(customer_ids))
        ids, _ = model.recommend(  # type: ignore[attr-defined]
            rows, user_items[rows], N=top, filter_already_liked_items=True
        )
        ids = np.asarray(ids).reshape(len(rows), -1)
        customer = np.repeat(m.customers[rows], ids.shape[1])
        code = ids.ravel()
        valid = code >= 0
        return pl.DataFrame(
            {
                "customer_id": customer[valid],
                "rank": np.tile(np.arange(1, ids.shape[1] + 1), len(rows))[valid],
                "stock_code": m.codes.gather(code[valid]),
                "score": np.zeros(valid.sum()),
            }
        )

    return method


def _item_item(weigh: Callable[[sparse.csr_matrix], sparse.csr_matrix]) -> Method:
    """Products not yet bought by Σ over the customer's products of the similarity of
    `weigh(X)`'s columns (every neighbour kept): the simpler item-item models, for comparison."""

    def method(m: Matrix, customer_ids: np.ndarray, top: int) -> pl.DataFrame:
        weighted = weigh(m.counts)
        sim = (weighted.T @ weighted).tolil()
        sim.setdiag(0)
        rows = m.rows(np.sort(customer_ids))
        scores = (m.counts[rows] @ sim.tocsr()).toarray()
        scores[m.counts[rows].toarray() > 0] = 0
        picks = []
        for i, row in enumerate(rows):
            order = np.lexsort((np.arange(len(m.codes)), -m.sellers, -scores[i]))[:top]
            order = order[scores[i, order] > 0]
            picks += [(m.customers[row], r + 1, m.codes[int(c)], 0.0) for r, c in enumerate(order)]
        return pl.DataFrame(
            picks, schema=["customer_id", "rank", "stock_code", "score"], orient="row"
        )

    return method


def _binary(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    return (counts > 0).astype(np.float64).tocsr()


def _cosine(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    ones = _binary(counts)
    norms = np.sqrt(np.asarray(ones.sum(axis=0)).ravel())
    return (ones @ sparse.diags(1 / np.maximum(norms, 1))).tocsr()


class _CustomerDocumentsBM25:
    """implicit's item-item recommender over the matrix weighted by `implicit.bm25_weight` with
    customers as documents, as lgs_fast weighs it (implicit's own BM25Recommender takes products
    as documents)."""

    def __init__(self, K: int) -> None:
        from implicit.nearest_neighbours import ItemItemRecommender

        self.model = ItemItemRecommender(K=K, num_threads=1)

    def fit(self, user_items: sparse.csr_matrix, show_progress: bool = False) -> None:
        from implicit.nearest_neighbours import bm25_weight

        weighted = bm25_weight(user_items, K1=100, B=0.8).tocsr()
        self.model.fit(weighted, show_progress=show_progress)

    def recommend(self, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        return self.model.recommend(*args, **kwargs)  # type: ignore[no-any-return]


def peers() -> dict[str, Method]:
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    return {
        "co-occurrence counts (customers as baskets)": _item_item(_binary),
        "cosine item-item": _item_item(_cosine),
        "implicit BM25Recommender, products as documents (K=200)": _implicit(
            lambda: BM25Recommender(K=200, K1=100, B=0.8, num_threads=1)
        ),
        "implicit item-item on BM25 with customers as documents (K=200)": _implicit(
            lambda: _CustomerDocumentsBM25(K=200)
        ),
        "implicit cosine item-item (K=200)": _implicit(
            lambda: CosineRecommender(K=200, num_threads=1)
        ),
        "implicit ALS (64 factors, seed 0)": _implicit(
            lambda: AlternatingLeastSquares(factors=64, random_state=0, num_threads=1)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, help="default: the shipped real data")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recommendations"))
    args = parser.parse_args()
    source = args.lake or lake(REAL_ROWS)
    options = Options()
    tables = compute_tables(source, options)
    started = time.perf_counter()
    result = holdout(tables["customer_products"], tables["rfm"], options, methods=peers())
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    rows = result.to_dicts()
    (args.out / "holdout.json").write_text(
        json.dumps({"lake": str(source), "seconds": seconds, "methods": rows}, indent=2) + "\n"
    )
    lines = [
        f"Holdout on `{source}` ({rows[0]['customers']:,} customers; "
        f"{options.recommendations} products per method):",
        "",
        "| method | customers whose hidden invoice holds one | share |",
        "|---|---:|---:|",
        *(f"| {r['method']} | {r['hits']:,} | {r['hit_rate']:.1%} |" for r in rows),
    ]
    (args.out / "holdout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""How the models (`lgs_fast.models.clv`, `lgs_fast.models.forecast`) run their numerical work: on one BLAS
thread.

Their maximum-likelihood searches make many small matrix and vector operations. With one BLAS
thread per core, each of those pays for waking and joining the others, and on a machine whose
cores are busy (the engines' own threads, another process) that cost dominates: at 76,812
customers the modified BG/NBD fit took 19.3 s with the default threads and 1.2 s with one, and
the forecast's ETS fits were ten times slower. One thread also makes the searches' sums come in
one order, so a fit converges or not the same way on every run (the threaded modified BG/NBD
fit above stopped short of converging).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, BLAS libraries (OpenBLAS, MKL) use one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield

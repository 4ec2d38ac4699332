"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): item-item regression in
closed form, the strongest simple baseline on MovieLens-scale data, fitted in the same run as NeuMF.

    P = (XᵀX + λI)⁻¹,   B = I - P · diagMat(1 / diag(P)),   score(u) = X_u · B

over the binary user x item training matrix X. B's diagonal is zero (an item may not predict itself).
λ is chosen on the validation split from a fixed grid (deterministic, not budgeted: each point costs one
dense n_items³ inversion). The Gram matrix is dense n_items², so a catalogue above ``max_items`` is
refused with ``EaseTooLargeError`` and the caller skips the baseline.

Items without a training pair are left out of the Gram matrix: their row and column of B are exactly
zero (P is block diagonal with 1/λ there), so they score 0, as the full formula gives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg as sl  # type: ignore[import-untyped]  # no stubs in the venv
import scipy.sparse as sp  # type: ignore[import-untyped]

from training_job.data import Positives
from training_job.evaluate import EvalCases, FloatMatrix, IntArray, K, metrics_from_ranks, sampled_ranks
from training_job.progress import log
from training_job.tune import TuneResult

LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0, 10_000.0)
"""The validation grid, ascending, half a decade apart, around Steck's choices (200 to 500 on ML-20M,
Netflix and MSD; 300 to 500 on ml-latest-small here)."""
MAX_ITEMS = 20_000
"""Above this many items with training pairs EASE is skipped: the Gram matrix (float32), its inverse
(float64) and B (float32) take 16 bytes x n² (6.4 GB at 20k)."""
_GATHER = 1 << 22  # score_pairs gathers at most this many B entries at a time (16 MB of float32)


class EaseTooLargeError(ValueError):
    """The catalogue is too large for a dense item x item matrix."""


def binary_matrix(train: Positives) -> sp.csr_matrix:
    """1 where the user has a training pair with the movie (event weights are ignored: EASE is binary)."""
    ones = np.ones(len(train), dtype=np.float32)
    x = sp.csr_matrix((ones, (train.user, train.movie)), shape=(train.n_users, train.n_movies))
    x.data[:] = 1.0  # a repeated pair sums above 1
    return x


def weights(gram: FloatMatrix, lam: float) -> FloatMatrix:
    """B for the Gram matrix XᵀX (its lower triangle is read) and regularisation λ, via Cholesky
    (half the work of an LU inverse)."""
    n = gram.shape[0]
    a = np.array(gram, dtype=np.float64, order="F")  # Fortran order: LAPACK works in place, no copies
    a[np.diag_indices(n)] += lam
    potrf, potri = sl.lapack.get_lapack_funcs(("potrf", "potri"), (a,))
    factor, info = potrf(a, lower=True, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: XᵀX + {lam:g}I is not positive definite (potrf info {info})")
    p, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: cannot invert XᵀX + {lam:g}I (potri info {info})")
    _mirror_lower(p)
    diagonal = p.diagonal().copy()
    p /= -diagonal[None, :]  # B_ij = -P_ij / P_jj off the diagonal
    p[np.diag_indices(n)] = 0.0  # B_jj = 1 - P_jj / P_jj
    b: FloatMatrix = p.astype(np.float32)
    return b


def _mirror_lower(p: npt.NDArray[np.float64], step: int = 512) -> None:
    """Copy the lower triangle onto the upper one in place, a band of rows at a time (no n² temporary)."""
    n = p.shape[0]
    for start in range(0, n, step):
        end = min(start + step, n)
        p[start:end, end:] = p[end:, start:end].T
        block = p[start:end, start:end]
        block[:] = np.tril(block) + np.tril(block, -1).T


class EaseScorer:
    """``X_u · B`` over the items with training pairs; every other movie scores 0."""

    def __init__(self, x: sp.csr_matrix, items: npt.NDArray[np.int64], b: FloatMatrix) -> None:
        self.n_movies = int(x.shape[1])
        self.items = items  # B's rows and columns are these movies
        self.x = x[:, items].tocsr()  # users x len(items)
        self.b = b
        self.position = np.full(self.n_movies, -1, dtype=np.int64)  # movie -> row/column of B
        self.position[items] = np.arange(len(items))

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        """Per user, the sum of B's rows of their items at the candidate columns (a gather, not X·B)."""
        out = np.zeros(movies.shape, dtype=np.float32)
        rows = self.x[users]
        counts = np.diff(rows.indptr)
        per_user = max(int(counts.max(initial=1)), 1) * movies.shape[1]
        step = max(1, _GATHER // per_user)
        columns = self.position[movies]
        known = columns >= 0
        columns = np.maximum(columns, 0)  # a movie outside B gathers column 0, then is zeroed
        for start in range(0, len(users), step):
            part = rows[start : start + step]
            owner = np.repeat(np.arange(part.shape[0]), np.diff(part.indptr))
            gathered = self.b[part.indices[:, None], columns[start : start + step][owner]]
            summing = sp.csr_matrix(
                (np.ones(len(owner), dtype=np.float32), (owner, np.arange(len(owner)))),
                shape=(part.shape[0], len(owner)),
            )
            out[start : start + step] = summing @ gathered
        out[~known] = 0.0
        return out

    def score_all(self, users: IntArray) -> FloatMatrix:
        out = np.zeros((len(users), self.n_movies), dtype=np.float32)
        out[:, self.items] = np.asarray(self.x[users] @ self.b)
        return out


def _prepare(train: Positives, max_items: int) -> tuple[sp.csr_matrix, npt.NDArray[np.int64], FloatMatrix]:
    x = binary_matrix(train)
    items = np.flatnonzero(np.diff(x.tocsc().indptr) > 0).astype(np.int64)
    if len(items) > max_items:
        raise EaseTooLargeError(
            f"EASE skipped: {len(items)} items with training pairs is above the cap of {max_items} "
            f"(a dense item x item matrix, ~{16 * len(items) ** 2 / 1e9:.1f} GB)"
        )
    return x, items, gram_lower(x[:, items])


def gram_lower(x: sp.csr_matrix, chunk: int = 1 << 24) -> FloatMatrix:
    """The lower triangle of XᵀX, accumulated in place by BLAS syrk over dense blocks of users: no
    sparse product (on MovieLens XᵀX is nearly dense, twice the bytes as sparse) and no n² temporary.
    float32 holds the co-occurrence counts exactly below 2**24 users."""
    n = x.shape[1]
    gram = np.zeros((n, n), dtype=np.float32, order="F")
    step = max(1, chunk // max(n, 1))
    for start in range(0, x.shape[0], step):
        block = x[start : start + step].toarray()
        sl.blas.ssyrk(1.0, block, beta=1.0, c=gram, trans=1, lower=1, overwrite_c=1)
    return gram


def fit_ease(train: Positives, lam: float, max_items: int = MAX_ITEMS) -> EaseScorer:
    x, items, gram = _prepare(train, max_items)
    return EaseScorer(x, items, weights(gram, lam))


def tune_ease(
    train: Positives, validation: EvalCases, lambdas: Sequence[float] = LAMBDAS, max_items: int = MAX_ITEMS
) -> TuneResult:
    """The λ of the (ascending) grid with the best NDCG@10 on ``validation`` (HR@10, then the smaller λ,
    break ties), found by a walk: start in the middle, step to the better neighbour until neither is
    better. Validation NDCG is unimodal in λ in practice (Steck's figure 1; measured here on
    ml-latest-small), and each point costs an inversion, so the walk saves about half the grid.

    ``best_attrs["validation"]`` holds the winner's HR@10 and NDCG@10; the trials look like
    ``tune.run_study``'s, so the report plots them with the others."""
    if not lambdas:
        raise ValueError("EASE: the λ grid is empty")
    started = time.monotonic()
    x, items, gram = _prepare(train, max_items)
    trials: list[dict[str, Any]] = []
    found: dict[int, dict[str, float]] = {}

    def visit(i: int) -> None:
        if i in found or not 0 <= i < len(lambdas):
            return
        tick = time.monotonic()
        scorer = EaseScorer(x, items, weights(gram, lambdas[i]))
        found[i] = metrics_from_ranks(sampled_ranks(scorer, validation), K)
        trials.append(
            {
                "number": len(trials),
                "state": "COMPLETE",
                "value": found[i].get(f"ndcg@{K}", 0.0),
                "params": {"lambda": lambdas[i]},
                "seconds": time.monotonic() - tick,
                "attr_hr@10": found[i].get(f"hr@{K}", 0.0),
            }
        )

    def key(i: int) -> tuple[float, float, int]:
        return found[i].get(f"ndcg@{K}", 0.0), found[i].get(f"hr@{K}", 0.0), -i

    current = (len(lambdas) - 1) // 2
    visit(current)
    while True:
        visit(current - 1)
        visit(current + 1)
        best = max(found, key=key)
        if best == current:
            break
        current = best
    lam = float(lambdas[current])
    attrs: dict[str, Any] = {"validation": found[current], "items": len(items)}
    if current in (0, len(lambdas) - 1) and len(lambdas) > 1:
        log("ease: the best λ is at the edge of the grid", lam=lam, grid=list(lambdas))
    value = found[current].get(f"ndcg@{K}", 0.0)
    return TuneResult({"lambda": lam}, value, attrs, trials, time.monotonic() - started)


def fit_tuned_ease(
    tune_train: Positives,
    validation: EvalCases,
    train: Positives,
    lambdas: Sequence[float] = LAMBDAS,
    max_items: int = MAX_ITEMS,
) -> tuple[EaseScorer, TuneResult]:
    """λ chosen on ``validation`` (models fitted on ``tune_train``), then EASE refitted on ``train``."""
    tuning = tune_ease(tune_train, validation, lambdas, max_items)
    return fit_ease(train, float(tuning.best_params["lambda"]), max_items), tuning

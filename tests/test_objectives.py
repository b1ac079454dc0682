"""InfoNCE terms against naive loop references, and the properties the paper relies on."""

import math

import pytest
import torch

from mmssl.types import SourceSpec
from mmssl.objectives import build_method
from mmssl.objectives.infonce import CriticConfig, critic, nce_pooled, nce_same_location

NO_CLIP = CriticConfig(clip=None, penalty=0.0)


def naive_pooled(u, v):
    """One softmax per positive (b, p, q): itself against every position of every other sample."""
    b, d, p = u.shape
    q = v.shape[2]
    losses = []
    for i in range(b):
        for pi in range(p):
            negs = [float(u[i, :, pi] @ v[j, :, qj]) / math.sqrt(d) for j in range(b) if j != i for qj in range(q)]
            for qi in range(q):
                pos = float(u[i, :, pi] @ v[i, :, qi]) / math.sqrt(d)
                logits = torch.tensor([pos] + negs, dtype=torch.float64)
                losses.append(-(logits[0] - torch.logsumexp(logits, 0)))
    return torch.stack(losses).mean()


def naive_same_location(u, v):
    b, d, m = u.shape
    losses = []
    for loc in range(m):
        for i in range(b):
            logits = torch.tensor([float(u[i, :, loc] @ v[j, :, loc]) / math.sqrt(d) for j in range(b)], dtype=torch.float64)
            losses.append(-(logits[i] - torch.logsumexp(logits, 0)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("p,q", [(1, 1), (1, 5), (3, 4)])
def test_pooled_matches_naive_reference(p, q):
    u, v = torch.randn(6, 8, p), torch.randn(6, 8, q)
    assert float(nce_pooled(u, v, NO_CLIP).loss) == pytest.approx(float(naive_pooled(u, v)), rel=1e-5)


def test_same_location_matches_naive_reference():
    u, v = torch.randn(5, 8, 7), torch.randn(5, 8, 7)
    assert float(nce_same_location(u, v, NO_CLIP).loss) == pytest.approx(float(naive_same_location(u, v)), rel=1e-5)


def test_critic_is_scaled_dot_product():
    u, v = torch.randn(3, 16, 2), torch.randn(4, 16, 5)
    s = critic(u, v)
    assert s.shape == (3, 2, 4, 5)
    assert float(s[1, 0, 2, 3]) == pytest.approx(float(u[1, :, 0] @ v[2, :, 3]) / 4.0, rel=1e-5)


def test_clipping_bounds_scores_and_penalty_uses_raw_scores():
    u = torch.randn(8, 16, 1) * 30
    v = u.clone()
    cfg = CriticConfig(clip=20.0, penalty=0.04)
    res = nce_pooled(u, v, cfg)
    raw = critic(u, v)
    assert float(res.penalty) == pytest.approx(0.04 * float(raw.pow(2).mean()), rel=1e-5)
    # with clipping every logit lies in (-20, 20): the loss cannot exceed log(K) + 40
    assert float(res.loss) <= math.log(1 + 7) + 40


@pytest.mark.parametrize("fn,shape", [(nce_pooled, (32, 16, 1)), (nce_same_location, (32, 16, 9))])
def test_aligned_pairs_beat_shuffled_and_bound_holds(fn, shape):
    u = torch.randn(*shape)
    v = u + 0.1 * torch.randn(*shape)
    aligned = fn(u * 3, v * 3, NO_CLIP)
    shuffled = fn(u * 3, v[torch.randperm(shape[0])] * 3, NO_CLIP)
    assert float(aligned.loss) < float(shuffled.loss) - 1.0
    k = shape[0] if fn is nce_same_location else 1 + (shape[0] - 1) * shape[2]
    for res in (aligned, shuffled):
        assert float(res.mi) <= math.log(k) + 1e-6  # InfoNCE never exceeds log N
    # a near-perfect critic (unit vectors, large scale) approaches the bound
    w = torch.nn.functional.normalize(u, dim=1) * 50
    assert float(fn(w, w, NO_CLIP).mi) == pytest.approx(math.log(k), abs=1e-3)


def two_sources(size=32, dims=2):
    return [SourceSpec("a", 1, size, dims), SourceSpec("b", 1, size, dims)]


def grads_by_encoder(name):
    m = build_method(name, two_sources(), {"penalty": 0.0})
    x = {"a": torch.randn(8, 1, 32, 32), "b": torch.randn(8, 1, 32, 32)}
    sum(m.losses(x).values()).backward()
    norm = lambda enc: sum(float(p.grad.abs().sum()) for p in enc.parameters() if p.grad is not None)
    return norm(m.encoders["a"]), norm(m.encoders["b"])


@pytest.mark.parametrize("name", ["CL", "CS", "S", "L-CL-CS-S"])
def test_cross_source_objectives_reach_both_encoders(name):
    ga, gb = grads_by_encoder(name)
    assert ga > 0 and gb > 0


def test_local_objective_trains_each_encoder_on_its_own():
    m = build_method("L", two_sources(), {"penalty": 0.0})
    x = {"a": torch.randn(8, 1, 32, 32), "b": torch.randn(8, 1, 32, 32)}
    terms = m.losses(x)
    # only source a's L term: no gradient may reach encoder b
    from mmssl.objectives.infonce import nce_pooled as nce

    proj = m.project(x)
    nce(proj["a"].u_z, proj["a"].u_c, m.critic).loss.backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in m.encoders["b"].parameters())
    assert sum(float(p.grad.abs().sum()) for p in m.encoders["a"].parameters() if p.grad is not None) > 0
    assert set(terms) == {"L"}


def test_combination_sums_its_parts_with_weights():
    x = {"a": torch.randn(8, 1, 32, 32), "b": torch.randn(8, 1, 32, 32)}
    torch.manual_seed(1)
    combo = build_method("L-S", two_sources(), {"penalty": 0.0, "weights": {"S": 2.0}})
    torch.manual_seed(1)
    single = build_method("S", two_sources(), {"penalty": 0.0})
    # S has no local heads (no part of it uses locations): the rest of the weights match
    single.load_state_dict({k: v for k, v in combo.state_dict().items() if not k.startswith("local_heads.")})
    combo.eval(), single.eval()
    with torch.no_grad():
        assert float(combo.losses(x)["S"]) == pytest.approx(2 * float(single.losses(x)["S"]), rel=1e-5)


def test_cross_source_term_sums_both_directions():
    x = {"a": torch.randn(8, 1, 32, 32), "b": torch.randn(8, 1, 32, 32)}
    m = build_method("S", two_sources(), {"penalty": 0.0}).eval()
    with torch.no_grad():
        proj = m.project(x)
        expected = nce_pooled(proj["a"].u_z, proj["b"].u_z, m.critic).loss + nce_pooled(proj["b"].u_z, proj["a"].u_z, m.critic).loss
        assert float(m.losses(x)["S"]) == pytest.approx(float(expected), rel=1e-5)


def test_a_method_without_local_parts_builds_no_local_heads():
    s_only = build_method("S", two_sources(), {})
    with_local = build_method("L-S", two_sources(), {})
    assert len(s_only.local_heads) == 0 and len(with_local.local_heads) == 2
    extra = sum(p.numel() for p in with_local.local_heads.parameters())
    assert sum(p.numel() for p in s_only.parameters()) == sum(p.numel() for p in with_local.parameters()) - extra > 0


def test_cs_defaults_to_the_authors_random_location():
    from mmssl.objectives.base import ModelSettings

    assert ModelSettings().cs_mode == "random_location"


def test_random_location_cs_is_the_authors_pairing():
    """CS in the authors' variant (their code, read for this: Entodi/fusion, CC mode of
    MultiDim with InfoNceEstimator): for each sample one location of c_a drawn at random is
    the anchor; every location of the same sample's c_b is a positive, each against every
    location of every other sample's c_b; both directions summed. Checked against the naive
    loop reference with the same draws."""
    x = {"a": torch.randn(4, 1, 32, 32), "b": torch.randn(4, 1, 32, 32)}
    m = build_method("CS", two_sources(), {"cs_mode": "random_location", "clip": None, "penalty": 0.0, "width": 4}).eval()
    with torch.no_grad():
        proj = m.project(x)
        torch.manual_seed(7)
        got = float(m.losses(x)["CS"])
        torch.manual_seed(7)  # project() in eval mode draws nothing: the same draws follow
        expected = 0.0
        for a, b in (("a", "b"), ("b", "a")):
            ca, cb = proj[a].u_c, proj[b].u_c  # (B, D, 64)
            idx = torch.randint(ca.shape[2], (ca.shape[0],))
            anchor = torch.stack([ca[i, :, int(idx[i])] for i in range(ca.shape[0])]).unsqueeze(2)  # (B, D, 1)
            expected += float(naive_pooled(anchor, cb))
    assert got == pytest.approx(expected, rel=1e-5)
    # and a different draw gives a different value: the anchor really is one random location
    torch.manual_seed(8)
    with torch.no_grad():
        assert float(m.losses(x)["CS"]) != pytest.approx(got, rel=1e-4)


def test_random_location_cs_mode_runs_in_3d():
    m = build_method("CS", two_sources(32, 3), {"cs_mode": "random_location", "width": 4})
    loss = m.losses({"a": torch.randn(4, 1, 32, 32, 32), "b": torch.randn(4, 1, 32, 32, 32)})["CS"]
    assert torch.isfinite(loss) and float(loss.detach()) > 0


def test_single_source_rejects_cross_objectives():
    with pytest.raises(ValueError, match="two or more sources"):
        build_method("S", [SourceSpec("a", 1, 32)])


def test_a_cs_mode_outside_the_schema_is_named_wherever_the_settings_are_built():
    from mmssl.objectives.base import ModelSettings

    """cs_mode's one check (the schema's enum, in ModelSettings): from a config section and
    from the constructor alike."""
    with pytest.raises(ValueError, match=r"model\.cs_mode: 'nearest' is not allowed; expected one of"):
        ModelSettings.from_config({"cs_mode": "nearest"})
    with pytest.raises(ValueError, match=r"model\.cs_mode: 'nearest' is not allowed; expected one of"):
        ModelSettings(cs_mode="nearest")

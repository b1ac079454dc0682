"""The criteria beside InfoNCE (issues 15 and 21): Barlow Twins, VICReg, decoupled
contrastive and y-aware against references written here from the published equations and
the official code's defaults (float64, loops, not our code), the S part's mean over the
two source orders, and how method names select them."""

from __future__ import annotations

import math
import sys
from itertools import combinations, permutations

import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.data.store import read_store, write_store
from mmssl.objectives import available_methods, build_method
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.criteria import CRITERIA, DEFAULT_CRITERION, Criterion, LatentCriterion
from mmssl.objectives.criteria.barlow import barlow_twins
from mmssl.objectives.criteria.dcl import dcl_official, dcl_pooled, dcl_same_location
from mmssl.objectives.criteria.vicreg import vicreg, vicreg_variance
from mmssl.objectives.criteria.yaware import yaware, yaware_weights
from mmssl.objectives.infonce import CriticConfig, nce_pooled
from mmssl.objectives.registry import check_method_name, criterion_names
from mmssl.schema import schema_defaults
from mmssl.train.loop import Trainer, TrainSettings
from mmssl.types import SourceSpec

PLAIN = CriticConfig(clip=None, penalty=0.0)
TOL = 1e-10


def pair(n: int = 12, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 (n, d) views, correlated, with per-dimension scales around 1 (so
    VICReg's variance hinge is active on some dimensions and not on others)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 1.8, d, dtype=torch.float64)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    b = 0.7 * a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 0.2
    return a, b


def rows(t: torch.Tensor) -> list[list[float]]:
    return t.tolist()


# ---------------------------------------------------------------- references (plain Python floats)
def ref_vicreg(x, y, sim=25.0, var=25.0, cov=1.0, gamma=1.0, eps=1e-4) -> float:
    """facebookresearch/vicreg main_vicreg.py: repr = mse(x, y); x, y centred;
    std = sqrt(var_unbiased + 1e-4); std_loss = mean(relu(1 - std_x)) / 2 + mean(relu(1 - std_y)) / 2;
    cov = x^T x / (N - 1); cov_loss = sum offdiag(cov_x)^2 / D + sum offdiag(cov_y)^2 / D."""
    x, y = rows(x), rows(y)
    n, d = len(x), len(x[0])
    invariance = sum((x[b][j] - y[b][j]) ** 2 for b in range(n) for j in range(d)) / (n * d)

    def centred(z):
        means = [sum(z[b][j] for b in range(n)) / n for j in range(d)]
        return [[z[b][j] - means[j] for j in range(d)] for b in range(n)]

    def std_term(zc):
        stds = [math.sqrt(sum(zc[b][j] ** 2 for b in range(n)) / (n - 1) + eps) for j in range(d)]
        return sum(max(0.0, gamma - s) for s in stds) / d

    def cov_term(zc):
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    total += (sum(zc[b][i] * zc[b][j] for b in range(n)) / (n - 1)) ** 2
        return total / d

    xc, yc = centred(x), centred(y)
    std_loss = std_term(xc) / 2 + std_term(yc) / 2
    return sim * invariance + var * std_loss + cov * (cov_term(xc) + cov_term(yc))


def ref_barlow(x, y, lam=0.0051, eps=1e-5) -> float:
    """facebookresearch/barlowtwins main.py: c = bn(z1)^T bn(z2) / N with BatchNorm1d(affine=False)
    (biased variance, eps 1e-5 inside the square root); sum (1 - c_ii)^2 + lambd sum_{i!=j} c_ij^2."""
    x, y = rows(x), rows(y)
    n, d = len(x), len(x[0])

    def bn(z):
        out = [[0.0] * d for _ in range(n)]
        for j in range(d):
            m = sum(z[b][j] for b in range(n)) / n
            v = sum((z[b][j] - m) ** 2 for b in range(n)) / n
            for b in range(n):
                out[b][j] = (z[b][j] - m) / math.sqrt(v + eps)
        return out

    xn, yn = bn(x), bn(y)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(xn[b][i] * yn[b][j] for b in range(n)) / n
            total += (1 - c) ** 2 if i == j else lam * c**2
    return total


def _unit(z):
    return [[v / math.sqrt(sum(w * w for w in r)) for v in r] for r in rows(z)]


def _dot(u, v) -> float:
    return sum(a * b for a, b in zip(u, v))


def ref_dcl(x, y, tau=0.1) -> float:
    """Yeh et al. 2022 eq. 6: for anchor z_i^(1): -s(z_i^1, z_i^2)/tau + log sum_{k != i}
    [exp(s(z_i^1, z_k^2)/tau) + exp(s(z_i^1, z_k^1)/tau)], cosine s; the mean over i, then
    over both views as anchors."""
    views = (_unit(x), _unit(y))
    n = len(views[0])
    total = 0.0
    for own, other in (views, views[::-1]):
        for i in range(n):
            neg = sum(math.exp(_dot(own[i], other[k]) / tau) + math.exp(_dot(own[i], own[k]) / tau)
                      for k in range(n) if k != i)
            total += (-_dot(own[i], other[i]) / tau + math.log(neg)) / n
    return total / 2


def ref_yaware(x, y, ages, sigma=5.0, tau=0.1) -> float:
    """Dufumier et al. 2021 / GeneralizedSupervisedNTXenLoss: the 2N latents [z_a; z_b]
    L2-normalised, cosine / tau; for anchor i the 2N - 1 others are the candidates, with
    weights K(y_i - y_k) = exp(-(y_i - y_k)^2 / (2 sigma^2)) normalised over them;
    loss = -(1/N) sum_i sum_{k != i} w_ik log(exp s_ik / sum_{j != i} exp s_ij)."""
    z = _unit(x) + _unit(y)
    lab = list(ages) + list(ages)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        denom = sum(math.exp(_dot(z[i], z[j]) / tau) for j in range(n2) if j != i)
        kern = {k: math.exp(-((lab[i] - lab[k]) ** 2) / (2 * sigma**2)) for k in range(n2) if k != i}
        norm = sum(kern.values())
        for k, w in kern.items():
            total -= (w / norm) * math.log(math.exp(_dot(z[i], z[k]) / tau) / denom)
    return total / (n2 // 2)


# ---------------------------------------------------------------- each criterion == its reference
@pytest.mark.parametrize("seed", [0, 1])
def test_vicreg_equals_the_released_code(seed):
    x, y = pair(seed=seed)
    got = float(vicreg(x, y, 25.0, 25.0, 1.0, 1.0, 1e-4))
    assert got == pytest.approx(ref_vicreg(x, y), abs=TOL, rel=TOL)
    # the hinge is neither all-on nor all-off on these inputs: the /2 is exercised
    assert 0 < float(vicreg_variance(x, 1.0, 1e-4)) < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_barlow_equals_the_released_code(seed):
    x, y = pair(seed=seed)
    x = x * 1e-2  # small variance: the epsilon inside the square root changes the value by ~10%
    assert float(barlow_twins(x, y, 0.0051, 1e-5)) == pytest.approx(ref_barlow(x, y), abs=TOL, rel=TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_dcl_equals_the_paper_with_intra_view_negatives(seed):
    x, y = pair(seed=seed)
    assert float(dcl_official(x, y, 0.1)) == pytest.approx(ref_dcl(x, y), abs=TOL, rel=TOL)
    assert float(dcl_official(x, y, 0.5)) == pytest.approx(ref_dcl(x, y, tau=0.5), abs=TOL, rel=TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_yaware_equals_the_paper_with_2n_minus_1_candidates(seed):
    x, y = pair(seed=seed)
    ages = [60.0 + 2.5 * i + (i % 3) for i in range(len(x))]
    age = torch.tensor(ages, dtype=torch.float64)
    assert float(yaware(x, y, age, 5.0, 0.1)) == pytest.approx(ref_yaware(x, y, ages), abs=TOL, rel=TOL)
    assert float(yaware(x, y, age, 2.0, 0.3)) == pytest.approx(ref_yaware(x, y, ages, 2.0, 0.3), abs=TOL, rel=TOL)


# ---------------------------------------------------------------- S: the mean of the two source orders
SOURCES = [SourceSpec("a", 1, 32), SourceSpec("b", 1, 32), SourceSpec("c", 1, 32)]


def _batch(n: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s.name: torch.rand(n, 1, 32, 32, generator=g, dtype=torch.float64) for s in SOURCES}


@pytest.mark.parametrize("criterion", ["vicreg", "barlow", "dcl", "yaware"])
def test_symmetric_s_term_is_the_mean_of_the_two_orders(criterion):
    """Three sources: S is sum over unordered pairs of the official value, i.e. the sum over
    the six ordered pairs halved (each unordered pair: the mean of its two orders)."""
    torch.manual_seed(0)
    model = build_method(f"S@{criterion}", SOURCES, {"latent": 8, "width": 4}).double()
    x = _batch()
    ages = [60.0 + 3 * i for i in range(10)]
    proj = model.project(x)
    terms = model.contrastive_terms(proj, None, {"age": torch.tensor(ages, dtype=torch.float64)})
    z = {s: p.z.detach() for s, p in proj.items()}
    ref = {"vicreg": ref_vicreg, "barlow": ref_barlow, "dcl": ref_dcl,
           "yaware": lambda a, b: ref_yaware(a, b, ages)}[criterion]
    ordered = [ref(z[i], z[j]) for i, j in permutations("abc", 2)]
    assert float(terms["S"].detach()) == pytest.approx(sum(ordered) / 2, abs=TOL, rel=TOL)
    # each order on its own is the same value (symmetric), so the mean is the official value
    for i, j in combinations("abc", 2):
        assert ref(z[i], z[j]) == pytest.approx(ref(z[j], z[i]), abs=TOL, rel=TOL)
    assert set(terms) == {"S"}  # no critic scores: no penalty term


@pytest.mark.parametrize("name,estimator,criteria", [("S", nce_pooled, {}),
                                                     ("S@dcl", dcl_pooled, {"dcl": {"s_form": "critic"}})])
def test_critic_s_term_sums_both_orders(name, estimator, criteria):
    """InfoNCE (as the authors' code) and the critic form of DCL are anchor -> target terms:
    S sums both orders, unchanged."""
    torch.manual_seed(0)
    cfg = {"latent": 8, "width": 4, "clip": None, "penalty": 0.0, "criteria": criteria}
    model = build_method(name, SOURCES[:2], cfg).double()
    proj = model.project(_batch())
    got = float(model.contrastive_terms(proj, None)["S"].detach())
    want = sum(float(estimator(proj[i].u_z, proj[j].u_z, PLAIN).loss.detach()) for i, j in permutations("ab", 2))
    assert got == pytest.approx(want, abs=TOL, rel=TOL)


# ---------------------------------------------------------------- properties
def whitened(b: int = 64, d: int = 8, seed: int = 0) -> torch.Tensor:
    """(b, d) with zero-mean, unit-variance, mutually uncorrelated columns."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    return q * math.sqrt(b)


def test_barlow_is_zero_for_identical_whitened_embeddings_and_grows_with_correlation():
    z = whitened()
    assert float(barlow_twins(z, z, 0.0051, 1e-5)) == pytest.approx(0.0, abs=1e-8)
    losses = []
    for rho in (0.0, 0.3, 0.6, 0.9):
        mixed = z.clone()
        mixed[:, 1] = rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]  # dims 0 and 1 correlate
        losses.append(float(barlow_twins(mixed, mixed, 1.0, 1e-5)))
    assert losses[0] == pytest.approx(0.0, abs=1e-8)
    assert all(a < b for a, b in zip(losses, losses[1:]))
    assert losses[-1] == pytest.approx(2 * 0.9**2, rel=1e-4)  # C_01 = C_10 = rho


def test_vicreg_variance_is_zero_above_the_threshold_and_positive_below():
    z = whitened(d=4) * 2.0  # sd 2 > gamma 1
    assert float(vicreg_variance(z, 1.0, 1e-4)) == 0.0
    small = z * 0.1
    want = np.mean([max(0.0, 1.0 - math.sqrt(float(small[:, d].var()) + 1e-4)) for d in range(4)])
    assert float(vicreg_variance(small, 1.0, 1e-4)) == pytest.approx(want, rel=1e-10)
    # the whole loss: the variance term is the mean of the two views' hinges
    assert float(vicreg(small, small, 0, 25, 0, 1.0, 1e-4)) == pytest.approx(25 * want, rel=1e-10)
    assert float(vicreg(z, z, 25, 25, 1, 1.0, 1e-4)) == pytest.approx(0.0, abs=1e-8)


def test_dcl_critic_form_equals_the_hand_written_formula():
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(6, 5, 1, generator=g, dtype=torch.float64), torch.randn(6, 5, 1, generator=g, dtype=torch.float64)
    s = (u[:, :, 0] @ v[:, :, 0].T) / math.sqrt(5)
    want = np.mean([-float(s[i, i]) + math.log(sum(math.exp(float(s[i, j])) for j in range(6) if j != i))
                    for i in range(6)])
    assert float(dcl_pooled(u, v, PLAIN).loss) == pytest.approx(want, rel=TOL)
    assert float(dcl_same_location(u, v, PLAIN).loss) == pytest.approx(want, rel=TOL)
    assert float(nce_pooled(u, v, PLAIN).loss) > want  # InfoNCE: the positive in the denominator too


def test_yaware_weights_and_its_nt_xent_limit():
    age = torch.tensor([60.0, 61.0, 65.0, 70.0, 72.0, 75.0, 80.0, 85.0], dtype=torch.float64)
    w = yaware_weights(age, 5.0)
    assert w.shape == (16, 16) and torch.allclose(w.sum(1), torch.ones(16, dtype=torch.float64))
    assert float(w.diagonal().abs().max()) == 0.0
    assert w[0, 8] > w[0, 1] > w[0, 2] > w[0, 3] > w[0, 7]  # the other view of the same age weighs most
    wider = yaware_weights(age, 20.0)
    assert wider[0, 7] > w[0, 7] and wider[0, 8] < w[0, 8]
    # sigma 0 (and sigma -> 0 with distinct ages): NT-Xent, the other view the only positive
    x, y = pair(n=8, seed=3)
    z = torch.nn.functional.normalize(torch.cat([x, y]), dim=1)
    s = (z @ z.T / 0.1).masked_fill(torch.eye(16, dtype=torch.bool), float("-inf"))
    ntxent = -torch.log_softmax(s, 1)[torch.arange(16), (torch.arange(16) + 8) % 16].sum() / 8
    assert float(yaware(x, y, age, 0.0, 0.1)) == pytest.approx(float(ntxent), rel=TOL)
    assert float(yaware(x, y, age, 1e-3, 0.1)) == pytest.approx(float(ntxent), rel=1e-8)
    assert abs(float(yaware(x, y, age, 5.0, 0.1)) - float(ntxent)) > 1e-3


# ---------------------------------------------------------------- method names and settings
def test_method_names_select_criteria_and_reject_the_rest():
    assert {"S@barlow", "S@vicreg", "S@yaware", "L-CL-CS-S@dcl"} <= set(criterion_names())
    assert len(criterion_names()) == 15 + 3
    with pytest.raises(ValueError, match=r"applies to part\(s\) S only.*S@vicreg"):
        check_method_name("L-S@vicreg")
    with pytest.raises(ValueError, match="unknown criterion 'simclr'"):
        check_method_name("S@simclr")
    sources = [SourceSpec("a", 1, 32), SourceSpec("b", 1, 32)]
    model = build_method("S@vicreg", sources, {"latent": 16, "width": 8, "criteria": {"vicreg": {"sim": 10.0}}})
    assert model.criterion.name == "vicreg" and model.settings.criteria["vicreg"] == {
        "sim": 10.0, "var": 25.0, "cov": 1.0, "gamma": 1.0, "eps": 1e-4}
    defaults = ModelSettings.from_config({"criteria": {}}).criteria
    assert defaults["dcl"] == {"s_form": "official", "temperature": 0.1}
    assert defaults["yaware"] == {"column": "age", "sigma": 5.0, "temperature": 0.1}
    assert defaults["barlow"] == {"lambda": 0.0051, "eps": 1e-5}
    x = {s.name: torch.rand(16, 1, 32, 32) for s in sources}
    terms = model.losses(x)
    assert set(terms) == {"S"} and torch.isfinite(terms["S"])  # no score penalty for VICReg
    dcl = build_method("L-CL-CS-S@dcl", sources, {"latent": 16, "width": 8})
    assert set(dcl.losses(x)) == {"L", "CL", "CS", "S", "penalty"}  # the penalty of L, CL, CS
    assert set(build_method("S@dcl", sources, {"latent": 16, "width": 8}).losses(x)) == {"S"}
    critic = build_method("S@dcl", sources, {"latent": 16, "width": 8, "criteria": {"dcl": {"s_form": "critic"}}})
    assert set(critic.losses(x)) == {"S", "penalty"}
    with pytest.raises(ValueError, match="s_form"):
        build_method("S@dcl", sources, {"latent": 16, "width": 8, "criteria": {"dcl": {"s_form": "cosine"}}})
    yaware_model = build_method("S@yaware", sources, {"latent": 16, "width": 8})
    with pytest.raises(ValueError, match="metadata column 'age'"):
        yaware_model.losses(x)
    assert set(yaware_model.losses(x, meta={"age": torch.linspace(60, 80, 16)})) == {"S"}


def _store(tmp_path, age):
    n = 64
    rng = np.random.default_rng(0)
    index = pd.DataFrame({"sample": [f"s{i}" for i in range(n)], "subject": [f"s{i}" for i in range(n)],
                          "label": np.arange(n) % 2})
    if age is not None:
        index["age"] = age
    sources = [SourceSpec("a", 1, 32), SourceSpec("b", 1, 32)]
    write_store(tmp_path / "store", index, {s.name: rng.random((n, 1, 32, 32), dtype=np.float32) for s in sources},
                sources)
    split = pd.DataFrame({"subject": index["subject"], "label": index["label"],
                          "split": np.where(np.arange(n) < 48, "train", "val")})
    return read_store(tmp_path / "store"), split


def test_yaware_reads_age_from_the_store_and_says_when_it_is_missing(tmp_path):
    settings = TrainSettings(device="cpu", batch_size=16, epochs=1)
    model = ModelSettings.from_config({"latent": 16, "width": 8})
    store, split = _store(tmp_path, None)
    with pytest.raises(ValueError, match=r"metadata column 'age'.*index.tsv lacks"):
        Trainer("S@yaware", store, split, tmp_path / "m", settings, model, 0)
    age = np.linspace(60, 90, 64)
    age[3] = np.nan
    store, split = _store(tmp_path / "nan", age)
    with pytest.raises(ValueError, match=r"no numeric value for 1 training/validation samples.*'s3'"):
        Trainer("S@yaware", store, split, tmp_path / "m2", settings, model, 0)
    store, split = _store(tmp_path / "ok", np.linspace(60, 90, 64))
    trainer = Trainer("S@yaware", store, split, tmp_path / "m3", settings, model, 0)
    assert trainer.fit() == "ok" and np.isfinite(trainer.rows[-1]["train_loss"])


# ---------------------------------------------------------------- the registry: one module + one entry per criterion
class ToyLatent(LatentCriterion):
    """A criterion written in a test: S only, latent-only, needs a metadata column, no
    settings (so no schema section): mean(meta) * MSE(za, zb)."""

    name = "toylatent"

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        return ("age",)

    def latent(self, za, zb, meta):
        return meta.mean() * torch.nn.functional.mse_loss(za, zb)


class ToyCritic(Criterion):
    """A criterion written in a test: critic form on L and S, twice InfoNCE."""

    name = "toycritic"
    parts = ("L", "S")

    def pooled(self, u, v, cfg):
        r = nce_pooled(u, v, cfg)
        return type(r)(loss=2 * r.loss, penalty=r.penalty, mi=r.mi)


def test_a_new_criterion_is_one_class_and_one_registry_entry(monkeypatch):
    """Registering a class in CRITERIA is all a criterion needs: its names become methods,
    the wrong parts are rejected, and ContrastiveMethod computes its loss unchanged."""
    monkeypatch.setitem(CRITERIA, "toylatent", ToyLatent)
    monkeypatch.setitem(CRITERIA, "toycritic", ToyCritic)
    assert {"S@toylatent", "L@toycritic", "S@toycritic", "L-S@toycritic"} <= set(criterion_names())
    assert not {n for n in criterion_names() if n.endswith("@toylatent") and n != "S@toylatent"}
    assert "L-S@toycritic" in available_methods() and check_method_name("S@toylatent") == "S@toylatent"
    with pytest.raises(ValueError, match=r"applies to part\(s\) L, S only.*L-S@toycritic"):
        check_method_name("CL@toycritic")
    cfg = {"latent": 8, "width": 4, "clip": None, "penalty": 0.0}

    torch.manual_seed(0)
    model = build_method("S@toylatent", SOURCES, cfg).double()
    assert model.metadata_columns == ("age",) and model.criterion.name == "toylatent"
    x, age = _batch(), torch.linspace(60.0, 90.0, 10, dtype=torch.float64)
    proj = model.project(x)
    terms = model.contrastive_terms(proj, None, {"age": age})
    want = sum(75.0 * float(torch.nn.functional.mse_loss(proj[i].z, proj[j].z).detach())
               for i, j in combinations("abc", 2))
    assert set(terms) == {"S"} and float(terms["S"].detach()) == pytest.approx(want, abs=TOL, rel=TOL)
    with pytest.raises(ValueError, match="metadata column 'age'"):
        model.losses(x)

    torch.manual_seed(0)
    model = build_method("L-S@toycritic", SOURCES[:2], cfg).double()
    proj = model.project(_batch())
    terms = model.contrastive_terms(proj, None)
    want_s = sum(2 * float(nce_pooled(proj[i].u_z, proj[j].u_z, PLAIN).loss.detach()) for i, j in permutations("ab", 2))
    want_l = sum(2 * float(nce_pooled(proj[i].u_z, proj[i].u_c, PLAIN).loss.detach()) for i in "ab")
    assert float(terms["S"].detach()) == pytest.approx(want_s, abs=TOL, rel=TOL)
    assert float(terms["L"].detach()) == pytest.approx(want_l, abs=TOL, rel=TOL)


def test_registry_names_and_schema_sections_agree():
    """Each entry's key is its class's name; each criterion with settings has its section
    under model.criteria in the schema, and each section there belongs to a criterion."""
    assert DEFAULT_CRITERION in CRITERIA
    assert all(kind.name == name for name, kind in CRITERIA.items())
    sections = {kind.schema_section for kind in CRITERIA.values()} - {None}
    assert sections == set(schema_defaults("model")["criteria"])
    settings = ModelSettings.from_config({"criteria": {}})
    for name, kind in CRITERIA.items():
        crit = kind.from_criteria_settings(settings.criteria)
        assert crit.settings == (settings.criteria[kind.schema_section] if kind.schema_section else {})
        assert set(crit.parts) <= {"L", "CL", "CS", "S"}
        # a latent-only S term: the only part, or a choice of the settings (dcl's s_form)
        assert not crit.latent_s or "S" in crit.parts
    assert CRITERIA["dcl"].from_criteria_settings(settings.criteria).latent_s
    assert not CRITERIA["dcl"]({"s_form": "critic", "temperature": 0.1}).latent_s
    assert CRITERIA["yaware"].from_criteria_settings(settings.criteria).metadata_columns == ("age",)


def test_criterion_names_appear_only_in_their_own_module_and_the_registry():
    """Nothing else in the package chooses by comparing a criterion's name (ask the
    criterion object instead)."""
    import re
    from pathlib import Path

    import mmssl
    root = Path(mmssl.__file__).parent
    criteria_dir = root / "objectives" / "criteria"
    for name, kind in CRITERIA.items():
        own = {Path(sys.modules[kind.__module__].__file__), criteria_dir / "__init__.py"}
        for path in root.rglob("*.py"):
            if path in own:
                continue
            code = re.sub(r'"""[\s\S]*?"""', "", path.read_text())  # docstrings may name it
            assert f'"{name}"' not in code and f"'{name}'" not in code, f"{path} names criterion {name!r}"

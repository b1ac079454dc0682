"""The criteria beside InfoNCE (issue 15): Barlow Twins, VICReg, decoupled contrastive and
y-aware InfoNCE against hand-written references, and how method names select them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.data.store import read_store, write_store
from mmssl.objectives import build_method
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.criteria import (barlow_twins, dcl_pooled, dcl_same_location, vicreg, vicreg_variance,
                                       yaware_infonce, yaware_weights)
from mmssl.objectives.infonce import CriticConfig, nce_pooled
from mmssl.objectives.registry import check_method_name, criterion_names
from mmssl.train.loop import Trainer, TrainSettings
from mmssl.types import SourceSpec

PLAIN = CriticConfig(clip=None, penalty=0.0)


def whitened(b: int = 64, d: int = 8, seed: int = 0) -> torch.Tensor:
    """(b, d) with zero-mean, unit-variance, mutually uncorrelated columns."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    return q * math.sqrt(b)


def test_barlow_is_zero_for_identical_whitened_embeddings_and_grows_with_correlation():
    z = whitened()
    assert float(barlow_twins(z, z, 0.0051)) == pytest.approx(0.0, abs=1e-6)
    losses = []
    for rho in (0.0, 0.3, 0.6, 0.9):
        mixed = z.clone()
        mixed[:, 1] = rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]  # dims 0 and 1 correlate
        losses.append(float(barlow_twins(mixed, mixed, 1.0)))
    assert losses[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in zip(losses, losses[1:]))
    # the naive formula: C_01 = C_10 = rho on the cross-correlation of mixed with itself
    assert losses[-1] == pytest.approx(2 * 0.9**2, rel=1e-4)


def test_vicreg_variance_is_zero_above_the_threshold_and_positive_below():
    z = whitened(d=4) * 2.0  # sd 2 > gamma 1
    assert float(vicreg_variance(z, 1.0, 1e-4)) == 0.0
    small = z * 0.1  # sd 0.2 (unbiased: slightly more)
    want = np.mean([max(0.0, 1.0 - math.sqrt(float(small[:, d].var()) + 1e-4)) for d in range(4)])
    assert float(vicreg_variance(small, 1.0, 1e-4)) == pytest.approx(want, rel=1e-6)
    assert want > 0.7
    # the whole loss: identical whitened views (sd > 1) leave only the covariance term, 0 here
    assert float(vicreg(z, z, 25, 25, 1, 1.0, 1e-4)) == pytest.approx(0.0, abs=1e-6)


def test_dcl_equals_the_hand_written_formula():
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(6, 5, 1, generator=g), torch.randn(6, 5, 1, generator=g)
    s = (u[:, :, 0] @ v[:, :, 0].T) / math.sqrt(5)
    want = np.mean([-float(s[i, i]) + math.log(sum(math.exp(float(s[i, j])) for j in range(6) if j != i))
                    for i in range(6)])
    assert float(dcl_pooled(u, v, PLAIN).loss) == pytest.approx(want, rel=1e-5)
    # one location: the same-location form is the same loss
    assert float(dcl_same_location(u, v, PLAIN).loss) == pytest.approx(want, rel=1e-5)
    # InfoNCE is DCL with the positive added to the denominator: never below it
    assert float(nce_pooled(u, v, PLAIN).loss) > want


def test_yaware_reduces_to_infonce_as_sigma_goes_to_zero_and_weighs_close_ages():
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    age = torch.tensor([60.0, 61.0, 65.0, 70.0, 72.0, 75.0, 80.0, 85.0])
    infonce = float(nce_pooled(u[:, :, None], v[:, :, None], PLAIN).loss)
    assert float(yaware_infonce(u, v, age, 0.0, PLAIN).loss) == pytest.approx(infonce, rel=1e-6)
    assert float(yaware_infonce(u, v, age, 1e-3, PLAIN).loss) == pytest.approx(infonce, rel=1e-5)
    w = yaware_weights(age, 5.0)
    assert torch.allclose(w.sum(1), torch.ones(8))
    assert w[0, 1] > w[0, 2] > w[0, 3] > w[0, 7]  # closer ages weigh more
    wider = yaware_weights(age, 20.0)
    assert wider[0, 7] > w[0, 7] and wider[0, 0] < w[0, 0]  # a wider kernel spreads the weight
    assert abs(float(yaware_infonce(u, v, age, 5.0, PLAIN).loss) - infonce) > 1e-3


def test_method_names_select_criteria_and_reject_the_rest():
    assert {"S@barlow", "S@vicreg", "S@yaware", "L-CL-CS-S@dcl"} <= set(criterion_names())
    assert len(criterion_names()) == 15 + 3
    with pytest.raises(ValueError, match=r"applies to part\(s\) S only.*S@vicreg"):
        check_method_name("L-S@vicreg")
    with pytest.raises(ValueError, match="unknown criterion 'simclr'"):
        check_method_name("S@simclr")
    sources = [SourceSpec("a", 1, 32), SourceSpec("b", 1, 32)]
    model = build_method("S@vicreg", sources, {"latent": 16, "width": 8, "criteria": {"vicreg": {"sim": 10.0}}})
    assert model.criterion == "vicreg" and model.settings.criteria["vicreg"] == {
        "sim": 10.0, "var": 25.0, "cov": 1.0, "gamma": 1.0, "eps": 1e-4}
    x = {s.name: torch.rand(16, 1, 32, 32) for s in sources}
    terms = model.losses(x)
    assert set(terms) == {"S"} and torch.isfinite(terms["S"])  # no score penalty for VICReg
    dcl = build_method("L-CL-CS-S@dcl", sources, {"latent": 16, "width": 8})
    assert set(dcl.losses(x)) == {"L", "CL", "CS", "S", "penalty"}
    yaware = build_method("S@yaware", sources, {"latent": 16, "width": 8})
    with pytest.raises(ValueError, match="metadata column 'age'"):
        yaware.losses(x)
    assert torch.isfinite(yaware.losses(x, meta={"age": torch.linspace(60, 80, 16)})["S"])


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

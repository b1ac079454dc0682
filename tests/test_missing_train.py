"""Training with missing sources (issue 14): every objective part over the samples that have
the sources it needs, nothing from the zero rows of an absent source."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.data.store import read_store, write_store
from mmssl.objectives import build_method
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.infonce import nce_pooled
from mmssl.train.loop import BatchLoader, Trainer, TrainSettings
from mmssl.types import SourceSpec

SOURCES = [SourceSpec("a", 1, 32, 2), SourceSpec("b", 1, 32, 2)]
SMALL = dict(latent=16, width=8)
B = 16


def settings(**kw) -> ModelSettings:
    return ModelSettings.from_config({**SMALL, "cs_mode": "same_location", **kw})


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s.name: torch.rand(B, 1, 32, 32, generator=g) for s in SOURCES}


def half_missing() -> dict[str, torch.Tensor]:
    """a for every sample, b for the first half only."""
    return {"a": torch.ones(B, dtype=torch.bool), "b": torch.arange(B) < B // 2}


def poisoned(x: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NaN in every row of an absent source: any use of it makes the loss NaN."""
    out = {}
    for s, v in x.items():
        v = v.clone()
        v[~present[s]] = float("nan")
        out[s] = v.requires_grad_(True)
    return out


@pytest.mark.parametrize("name", ["L-CL-CS-S", "CL", "CS", "S", "L-S"])
def test_cross_parts_equal_the_complete_only_batch(name):
    """With b absent for half the batch, the parts that need both sources equal those of
    the batch of complete samples alone (eval mode: BatchNorm then treats each sample on
    its own, as it must for the comparison)."""
    torch.manual_seed(0)
    model = build_method(name, SOURCES, settings()).eval()
    x, present = batch(), half_missing()
    terms = model.losses(poisoned(x, present), present=present)
    complete = {s: v[: B // 2] for s, v in x.items()}
    reference = model.losses(complete)
    for part in ("CL", "CS", "S"):
        if part in reference:
            assert float(terms[part].detach()) == pytest.approx(float(reference[part].detach()), rel=1e-5), part


def test_local_part_adds_the_single_source_samples():
    """L: source a over all 16 samples, b over the 8 that have it."""
    torch.manual_seed(0)
    model = build_method("L", SOURCES, settings()).eval()
    x, present = batch(), half_missing()
    got = float(model.losses(poisoned(x, present), present=present)["L"].detach())
    with torch.no_grad():
        pa = model.project({"a": x["a"], "b": x["b"]})["a"]
        pb = model.project({"a": x["a"][: B // 2], "b": x["b"][: B // 2]})["b"]
        want = nce_pooled(pa.u_z, pa.u_c, model.critic).loss + nce_pooled(pb.u_z, pb.u_c, model.critic).loss
    assert got == pytest.approx(float(want), rel=1e-5)
    # not the complete-only value: the 8 single-source samples count
    only = float(model.losses({s: v[: B // 2] for s, v in x.items()})["L"].detach())
    assert abs(got - only) > 1e-3


@pytest.mark.parametrize("name", ["L-CL-CS-S", "S", "supervised", "AE", "S-AE", "MMVAE"])
def test_no_gradient_from_samples_without_the_source(name):
    """Training mode: the loss is finite although absent rows are NaN, and their gradient
    is exactly zero (the encoder never saw them); the present rows get gradient."""
    torch.manual_seed(0)
    model = build_method(name, SOURCES, settings(extra={"n_classes": 3, "mmvae_k": 2})).train()
    present = half_missing()
    x = poisoned(batch(), present)
    y = torch.arange(B) % 3
    terms = model.losses(x, y, present)
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    assert torch.all(x["b"].grad[~present["b"]] == 0)
    assert x["b"].grad[present["b"]].abs().sum() > 0
    assert x["a"].grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["L-CL-CS-S", "S", "CL", "supervised", "AE", "S-AE", "MMVAE"])
def test_a_batch_without_a_complete_sample(name):
    """Half the samples have only a, half only b: cross-source parts have nothing to work
    on and are left out, never NaN; single-source parts remain."""
    torch.manual_seed(0)
    model = build_method(name, SOURCES, settings(extra={"n_classes": 3, "mmvae_k": 2})).train()
    present = {"a": torch.arange(B) < B // 2, "b": torch.arange(B) >= B // 2}
    terms = model.losses(poisoned(batch(), present), torch.arange(B) % 3, present)
    for k, v in terms.items():
        assert torch.isfinite(v), k
    assert not {"CL", "CS", "S"} & set(terms)
    if name in ("L-CL-CS-S", "supervised", "AE", "S-AE", "MMVAE"):
        assert terms  # a single-source part is left
    if name in ("S", "CL"):
        assert terms == {}  # nothing any part can use: the trainer skips the batch


def test_mmvae_subset_posterior_is_the_unimodal_bound():
    """Samples with one source: their bound is the plain IWAE of that source's VAE."""
    torch.manual_seed(0)
    model = build_method("MMVAE", SOURCES, settings(extra={"mmvae_k": 3})).eval()
    x = batch()
    present = {"a": torch.ones(B, dtype=torch.bool), "b": torch.zeros(B, dtype=torch.bool)}
    torch.manual_seed(1)
    got = float(model.losses(x, present=present)["iwae"].detach())
    torch.manual_seed(1)
    q = model.posterior(x["a"], "a")
    want = -model.subset_bound({"a": q}, {"a": x["a"]}).mean() / (32 * 32)
    assert got == pytest.approx(float(want.detach()), rel=1e-5)


@pytest.mark.parametrize("name", ["DCCAE", "L-CCA"])
def test_cca_methods_refuse_partial_batches(name):
    model = build_method(name, SOURCES, settings())
    assert not model.supports_missing
    with pytest.raises(ValueError, match="complete samples only"):
        model.losses(batch(), present=half_missing())


def test_complete_presence_is_the_complete_path():
    """A presence dict where everything is present gives the numbers of present=None."""
    torch.manual_seed(0)
    model = build_method("L-CL-CS-S", SOURCES, settings()).eval()
    x = batch()
    everything = {s.name: torch.ones(B, dtype=torch.bool) for s in SOURCES}
    a, b = model.losses(x), model.losses(x, present=everything)
    assert {k: float(v.detach()) for k, v in a.items()} == {k: float(v.detach()) for k, v in b.items()}


# ---------------------------------------------------------------- the trainer
@pytest.fixture
def partial_store(tmp_path):
    """96 samples of 2 sources; b absent for every third sample; labels 0/1."""
    rng = np.random.default_rng(0)
    n = 96
    has_b = np.arange(n) % 3 != 0
    a = rng.random((n, 1, 32, 32), dtype=np.float32)
    b = rng.random((n, 1, 32, 32), dtype=np.float32) * has_b[:, None, None, None]
    index = pd.DataFrame({"sample": [f"s{i}" for i in range(n)], "subject": [f"s{i}" for i in range(n)],
                          "label": np.arange(n) % 2, "has_a": 1, "has_b": has_b.astype(int)})
    write_store(tmp_path / "store", index, {"a": a, "b": b}, SOURCES)
    split = pd.DataFrame({"subject": index["subject"], "label": index["label"],
                          "split": np.where(np.arange(n) < 64, "train", np.where(np.arange(n) < 80, "val", "test"))})
    return read_store(tmp_path / "store"), split, tmp_path


def test_loader_yields_presence_only_when_something_is_missing(partial_store):
    store, _, _ = partial_store
    rows = np.arange(32)
    present = next(iter(BatchLoader(store, rows, 8, shuffle=False, balanced=False, seed=0))).present
    assert present["b"].tolist() == [i % 3 != 0 for i in range(8)]
    complete = rows[store.complete[rows]]
    assert next(iter(BatchLoader(store, complete, 8, shuffle=False, balanced=False, seed=0))).present is None


@pytest.mark.parametrize("method,missing,expected", [
    ("S", "use", 64), ("S", "drop", 42), ("DCCAE", "use", 42), ("supervised", "use", 64),
])
def test_trainer_rows_follow_train_missing(partial_store, method, missing, expected, caplog):
    store, split, tmp = partial_store
    with caplog.at_level(logging.INFO, logger="mmssl.train"):
        trainer = Trainer(method, store, split, tmp / method, TrainSettings(device="cpu", batch_size=16, epochs=1,
                                                                            incomplete_samples=missing),
                          ModelSettings.from_config(SMALL), 0)
    assert len(trainer.train_rows) == expected
    if method == "DCCAE":
        assert "trains on complete samples only" in caplog.text
    assert trainer.fit() == "ok"
    assert np.isfinite(trainer.rows[-1]["train_loss"]) and np.isfinite(trainer.rows[-1]["val_loss"])

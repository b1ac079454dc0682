"""Training device and precision: a GPU job that gets no GPU stops with the node's facts,
train.amp means what it says on CPU too, and checkpoints resume across amp settings."""

import json
import logging
import socket
import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.config import ConfigError, dataset_section, validate
from mmssl.data.store import read_store
from mmssl.objectives.base import ModelSettings
from mmssl.device import select_device
from mmssl.train.loader import BatchLoader
from mmssl.train.loop import Trainer, train
from mmssl.train.settings import TrainSettings

from conftest import write_toy_store

SMALL = {"width": 4, "latent": 8}
RTOL = 2e-2  # bf16 autocast vs fp32, per-epoch mean losses of the same run (measured: 2e-3)


@pytest.fixture()
def toy(tmp_path):
    """Two views of 96 random 16x16 images in 4 classes; 64 train, 32 val."""
    return write_toy_store(tmp_path, 96, 64)


def run(toy, name, **train_kw):
    settings = {"epochs": 3, "batch_size": 16, "device": "cpu", "prefetch": 0, **train_kw}
    out = toy / name
    status = train(toy / "store", toy / "fold0.tsv", "L-S", 0, out / "model.pt", out / "metrics.tsv", settings, SMALL)
    return status, pd.read_csv(out / "metrics.tsv", sep="\t")


@pytest.fixture()
def autocast_seen(monkeypatch):
    """Records, for every conv forward, whether CPU autocast was on and the output dtype."""
    seen = []
    orig_init = Trainer.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        for m in self.model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda mod, inp, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))

    monkeypatch.setattr(Trainer, "__init__", init)
    return seen


def test_bf16_on_cpu_autocasts_and_matches_fp32(toy, autocast_seen):
    status, off = run(toy, "off", amp="off", epochs=2)
    assert status == "ok" and autocast_seen and set(autocast_seen) == {(False, torch.float32)}
    autocast_seen.clear()
    status, bf16 = run(toy, "bf16", amp="bf16", epochs=2)
    assert status == "ok" and autocast_seen and set(autocast_seen) == {(True, torch.bfloat16)}
    for col in ("train_loss", "val_loss"):
        assert np.isfinite(bf16[col]).all()
        np.testing.assert_allclose(bf16[col], off[col], rtol=RTOL)
    assert not np.array_equal(bf16["train_loss"], off["train_loss"])  # bf16 really changed the arithmetic


def test_amp_auto_and_old_booleans_stay_fp32_on_cpu(toy):
    store, split = read_store(toy / "store"), pd.read_csv(toy / "fold0.tsv", sep="\t")
    for amp, normalised, on in (("auto", "auto", False), (True, "auto", False), (False, "off", False),
                                ("off", "off", False), ("bf16", "bf16", True)):
        settings = TrainSettings(device="cpu", batch_size=16, amp=amp)
        assert settings.amp == normalised
        trainer = Trainer("L-S", store, split, toy / "t", settings, ModelSettings(**SMALL), 0)
        with trainer._autocast():
            assert torch.is_autocast_enabled("cpu") is on, amp
    with pytest.raises(ValueError, match="train.amp must be one of"):
        TrainSettings(amp="fp16")


def test_schema_amp_values_and_the_dataclass_defaults_are_the_schemas():
    import yaml

    def section(train_yaml):
        cfg = validate({"datasets": {"d": {"kind": "two_view_mnist"}}, **yaml.safe_load(train_yaml)})
        return TrainSettings.from_config(dataset_section(cfg, "d", "train"))

    defaults = section("{}")
    assert defaults == TrainSettings()  # the dataclass takes its defaults from the schema
    assert TrainSettings().augment == {"pad": 0, "flip": 0.0}
    assert TrainSettings(augment={"pad": 8}).augment == {"pad": 8, "flip": 0.0}  # one setting, one fingerprint
    assert defaults.amp == "auto" and defaults.device == "auto"
    assert section("train: {amp: off}").amp == "off"  # YAML's unquoted off is false
    assert section("train: {amp: bf16}").amp == "bf16"
    assert section("train: {amp: true}").amp == "auto"
    with pytest.raises(ConfigError, match="amp"):
        section("train: {amp: fp16}")


def test_pinned_batches_reach_the_device_unchanged(toy):
    try:
        torch.zeros(1).pin_memory()
    except RuntimeError as err:  # CPU-only builds: "Cannot access accelerator device when none is available."
        pytest.skip(f"pin_memory() unsupported on this torch build ({torch.__version__}): {err}")
    store = read_store(toy / "store")
    rows = np.arange(64)
    pinned = list(BatchLoader(store, rows, 16, shuffle=True, balanced=False, seed=0, pin_memory=True))
    plain = list(BatchLoader(store, rows, 16, shuffle=True, balanced=False, seed=0))
    trainer = Trainer("L-S", store, pd.read_csv(toy / "fold0.tsv", sep="\t"), toy / "t",
                      TrainSettings(device="cpu", batch_size=16), ModelSettings(**SMALL), 0)
    for pinned_batch, (x, y, _, _) in zip(pinned, plain):
        assert all(v.is_pinned() for v in pinned_batch.x.values())
        xd, yd, _, _ = trainer._to_device(pinned_batch)
        for k in x:
            assert torch.equal(xd[k], x[k].float())
        assert torch.equal(yd, y)


@pytest.mark.parametrize("first,then", [("bf16", "off"), ("off", "bf16")])
def test_checkpoint_resumes_across_amp(toy, interrupt_training, caplog, first, then):
    restore = interrupt_training(at=2)
    with pytest.raises(KeyboardInterrupt):
        run(toy, "r", amp=first)
    assert (toy / "r" / "checkpoint.pt").exists()
    restore()
    with caplog.at_level(logging.INFO, logger="mmssl.train"):
        status, metrics = run(toy, "r", amp=then)
    assert "resumed from" in caplog.text and "at epoch 1" in caplog.text
    assert status == "ok" and metrics["epoch"].tolist() == [1, 2, 3]
    assert np.isfinite(metrics[["train_loss", "val_loss"]].to_numpy()).all()


def test_cuda_without_cuda_is_an_error_naming_the_node(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    host = socket.gethostname()
    for name in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError) as err:
            select_device(name)
        msg = str(err.value)
        assert host in msg and "torch.cuda.is_available()=False" in msg, msg
        assert f"torch.version.cuda={torch.version.cuda}" in msg and "CUDA_VISIBLE_DEVICES=''" in msg, msg
    with caplog.at_level(logging.WARNING, logger="mmssl.device"):
        assert select_device("auto") == torch.device("cpu")
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and host in warning[0].getMessage() and "training on CPU" in warning[0].getMessage()
    assert select_device("cpu") == torch.device("cpu")


def test_cli_train_on_cuda_without_cuda_fails_with_one_clear_line(toy, monkeypatch, caplog):
    from mmssl.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = toy / "cli"
    rc = main(["train", "--store", str(toy / "store"), "--split", str(toy / "fold0.tsv"), "--method", "L-S",
               "--fold", "0", "--model", str(out / "model.pt"), "--metrics", str(out / "metrics.tsv"),
               "--train-json", json.dumps({"device": "cuda"})])
    assert rc == 1 and not (out / "model.pt").exists()
    assert f"train failed: train.device is 'cuda' but CUDA is not usable on node {socket.gethostname()}" in caplog.text

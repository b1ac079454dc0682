"""Training loop: learning happens, resume is exact, divergence is handled, and model /
checkpoint files are only ever loaded with torch's weights-only unpickler."""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.objectives.model_file import FORMAT, RunFileError, load_model, read_model
from mmssl.train import checkpoint
from mmssl.train.loader import BatchLoader
from mmssl.train.loop import DivergenceError, Trainer, train

from conftest import write_toy_store

SMALL = {"width": 4, "latent": 8}


@pytest.fixture()
def toy(tmp_path):
    """Two views of 160 random 16x16 'digits' in 4 classes; 128 train, 32 val."""
    return write_toy_store(tmp_path, 160, 128)


def run(toy, method="L-S", name="m", **train_kw):
    settings = {"epochs": 3, "batch_size": 32, **train_kw}
    out = toy / name
    status = train(toy / "store", toy / "fold0.tsv", method, 0, out / "model.pt", out / "metrics.tsv", settings, SMALL)
    return status, pd.read_csv(out / "metrics.tsv", sep="\t"), out


def test_training_lowers_the_loss_and_writes_outputs(toy):
    status, metrics, out = run(toy, epochs=6, scheduler="none", lr=1e-2)
    assert status == "ok" and len(metrics) == 6
    # the paired views share their content: the cross-latent term must learn it
    assert metrics["S"].iloc[-1] < metrics["S"].iloc[0] - 0.5
    assert {"L", "S", "penalty", "val_loss", "seconds", "samples_per_s"} <= set(metrics.columns)
    model, meta = load_model(out / "model.pt")
    assert meta["status"] == "ok" and model.embed(torch.zeros(2, 1, 16, 16), "a").shape == (2, 8)


def test_resume_after_interruption_is_exact(toy, interrupt_training):
    _, straight, out = run(toy, name="straight")
    reference = read_model(out / "model.pt")[1]

    restore = interrupt_training(at=2)
    with pytest.raises(KeyboardInterrupt):
        run(toy, name="resumed")
    assert (toy / "resumed" / "checkpoint.pt").exists() and not (toy / "resumed" / "model.pt").exists()
    restore()
    status, resumed, out = run(toy, name="resumed")
    state = read_model(out / "model.pt")[1]
    assert status == "ok" and resumed["epoch"].tolist() == [1, 2, 3]
    assert list(resumed.columns) == list(straight.columns)  # the checkpoint's sorted JSON keys do not leak
    np.testing.assert_allclose(resumed["train_loss"], straight["train_loss"], rtol=1e-5)
    for k in reference:
        assert torch.allclose(reference[k].float(), state[k].float(), atol=1e-6), k


def test_checkpoint_from_other_settings_is_not_resumed(toy):
    run(toy, name="x")
    status, metrics, _ = run(toy, name="x", epochs=2)
    assert metrics["epoch"].tolist() == [1, 2]


def nan_after(n_ok):
    """A losses() wrapper whose loss is NaN from call n_ok on (n_ok=None: never)."""
    state = {"calls": 0}

    def wrap(fn):
        def losses(x, y=None, present=None, meta=None):
            state["calls"] += 1
            terms = fn(x, y, present, meta)
            if n_ok is not None and state["calls"] > n_ok:
                terms["S"] = terms["S"] * float("nan")
            return terms

        return losses

    return wrap, state


def test_one_nan_is_recovered_with_a_lower_learning_rate(toy, monkeypatch):
    orig_init = Trainer.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        fn = self.model.losses
        calls = {"n": 0}

        def losses(x, y=None, present=None, meta=None):
            calls["n"] += 1
            terms = fn(x, y, present, meta)
            if calls["n"] == 6:  # one bad batch in epoch 2
                terms["S"] = terms["S"] * float("nan")
            return terms

        self.model.losses = losses

    monkeypatch.setattr(Trainer, "__init__", init)
    status, metrics, _ = run(toy, scheduler="none", lr=1e-3)
    assert status == "ok" and metrics["epoch"].tolist() == [1, 2, 3]
    assert metrics["lr"].iloc[0] == pytest.approx(1e-3) and metrics["lr"].iloc[-1] == pytest.approx(1e-4)


def always_nan(monkeypatch):
    orig_init = Trainer.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        fn = self.model.losses
        self.model.losses = lambda x, y=None, present=None, meta=None: {k: v * float("nan") for k, v in fn(x, y, present, meta).items()}

    monkeypatch.setattr(Trainer, "__init__", init)


def test_persistent_nan_marks_the_run_diverged(toy, monkeypatch):
    always_nan(monkeypatch)
    status, metrics, out = run(toy)
    assert status == "diverged" and set(metrics["status"]) <= {"diverged"}
    model, meta = load_model(out / "model.pt")
    assert model is None and meta["status"] == "diverged"


def test_persistent_nan_can_stop_with_a_clear_error(toy, monkeypatch):
    always_nan(monkeypatch)
    with pytest.raises(DivergenceError, match="L-S fold 0: loss became NaN/inf at epoch 1"):
        run(toy, on_divergence="error")


def test_random_method_is_not_trained(toy):
    status, metrics, out = run(toy, method="random")
    assert status == "ok" and metrics.empty
    model, _ = load_model(out / "model.pt")
    assert model is not None


def test_balanced_sampler_equalises_classes(toy):
    from mmssl.data.store import read_store

    st = read_store(toy / "store")
    rows = np.r_[np.arange(0, 160, 4), np.arange(1, 160, 4)[:8]]  # class 0: 40 rows, class 1: 8 rows
    loader = BatchLoader(st, rows, 16, shuffle=True, balanced=True, seed=0)
    labels = np.concatenate([y.numpy() for _ in range(30) for _, y, _, _ in loader])
    share = labels.mean()
    assert 0.45 < share < 0.55  # without balancing it would be 8/48 = 0.17


def test_metrics_report_the_time_spent_waiting_for_data(toy, monkeypatch):
    """data_s / data_fraction: the share of an epoch the model waits on the loader."""
    import time

    _, fast, _ = run(toy, name="fast", epochs=1)
    original = BatchLoader.__iter__

    def slow(self):
        for batch in original(self):
            time.sleep(1.0)  # long beside a step even on a loaded machine
            yield batch

    monkeypatch.setattr(BatchLoader, "__iter__", slow)
    # no prefetch thread: each batch's wait lies wholly in the training loop, so the
    # measured wait cannot shrink when a loaded machine slows the steps down
    _, slowed, _ = run(toy, name="slow", epochs=1, prefetch=0)
    assert slowed["data_s"].iloc[0] >= 4 * 1.0 - 0.05  # 4 batches of 32
    assert slowed["data_fraction"].iloc[0] > 0.5 > fast["data_fraction"].iloc[0]
    assert slowed["data_fraction"].iloc[0] <= 1.0


def test_prefetch_keeps_batches_ready_in_order_and_passes_errors_on():
    import threading

    from mmssl.data.prefetch import prefetched

    produced = []
    more = threading.Event()

    def items():
        for i in range(6):
            produced.append(i)
            yield i

    stream = prefetched(items(), depth=2)
    assert next(stream) == 0
    # while the consumer holds item 0, the thread readies items 1 and 2 (the queue) and
    # holds 3 waiting for room: the loader runs ahead of the step
    for _ in range(200):
        if len(produced) >= 4:
            break
        more.wait(0.01)
    assert produced == [0, 1, 2, 3]
    assert list(stream) == [1, 2, 3, 4, 5]  # same order as the plain loop
    assert list(prefetched(items(), depth=0)) == list(range(6))

    def failing():
        yield 1
        raise OSError("store file vanished")

    with pytest.raises(OSError, match="vanished"):
        list(prefetched(failing(), depth=2))
    early = prefetched(iter(range(1000)), depth=2)
    assert next(early) == 0
    early.close()  # the thread stops instead of running on
    assert not any(t.name == "mmssl-prefetch" and t.is_alive() for t in threading.enumerate())


# ------------------------------------------------------------------ safe loading


@dataclass
class OldSettings:
    """Stands for the dataclasses older mmssl versions pickled into model.pt."""

    epochs: int = 3


class RunsCode:
    """Unpickling this calls Path.touch on ``marker``: what a malicious model.pt could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_model_and_checkpoint_hold_only_tensors_and_plain_values(toy, interrupt_training):
    restore = interrupt_training(at=2)
    with pytest.raises(KeyboardInterrupt):  # a killed job leaves its resume state
        run(toy, epochs=3)
    restore()
    out = toy / "m"
    saved = checkpoint.read_checkpoint(out / "checkpoint.pt")
    assert saved["meta"]["epoch"] == 1 and len(saved["meta"]["rows"]) == 1
    assert saved["meta"]["np_rng"]["bit_generator"] == "PCG64"
    _, _, out = run(toy, epochs=1)  # other settings: starts again, and finishes
    assert not (out / "checkpoint.pt").exists()  # resume state does not outlive the run
    for name in ("model.pt",):
        payload = torch.load(out / name, weights_only=True)  # raises if anything else were inside
        assert payload["format"] == FORMAT and isinstance(payload["meta"], str)
    meta, state = read_model(out / "model.pt")
    assert (meta["method"], meta["fold"], meta["status"], meta["epochs"]) == ("L-S", 0, "ok", 1)
    assert meta["sources"] == [{"name": "a", "channels": 1, "size": 16, "dims": 2},
                               {"name": "b", "channels": 1, "size": 16, "dims": 2}]
    assert meta["model_settings"]["latent"] == 8 and meta["train_settings"]["batch_size"] == 32
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("name", ["model.pt", "checkpoint.pt"])
def test_old_pickled_files_are_refused_with_a_clear_error(toy, name):
    """A file of the old format (whole objects pickled, here a dataclass) is not loaded:
    the error names the file and says to delete it and retrain."""
    out = toy / "old"
    out.mkdir()
    torch.save({"status": "ok", "train_settings": OldSettings(), "state_dict": {}}, out / name)
    expected = rf"{re.escape(str(out / name))}: refused to load this .* file: it holds pickled Python objects.*Delete .* and retrain"
    if name == "model.pt":
        with pytest.raises(RunFileError, match=expected):
            load_model(out / name)
    else:  # the training job that would resume from it stops instead
        with pytest.raises(RunFileError, match=expected):
            train(toy / "store", toy / "fold0.tsv", "L-S", 0, out / "model.pt", out / "metrics.tsv",
                  {"epochs": 1, "batch_size": 32}, SMALL)
        assert not (out / "model.pt").exists()


def test_loading_never_unpickles_code(toy):
    """A file whose pickle would run code is refused before anything runs: proof that no
    path loads with weights_only=False."""
    out = toy / "evil"
    out.mkdir()
    marker = toy / "code-ran"
    for name in ("model.pt", "checkpoint.pt"):
        torch.save({"format": FORMAT, "meta": "{}", "payload": RunsCode(marker)}, out / name)
    with pytest.raises(RunFileError, match="refused to load"):
        load_model(out / "model.pt")
    with pytest.raises(RunFileError, match="refused to load"):
        checkpoint.read_checkpoint(out / "checkpoint.pt")
    assert not marker.exists()
    package = Path(checkpoint.__file__).parents[1]  # workflow/mmssl
    assert not [str(f) for f in package.rglob("*.py") if "weights_only=False" in f.read_text()]


def test_a_weights_only_file_of_another_layout_is_named(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "model.pt")  # a bare state dict
    with pytest.raises(RunFileError, match=rf"model.pt: not an mmssl model file of format {FORMAT} \(found None\)"):
        load_model(tmp_path / "model.pt")


# --- issue 13: the encoder selected, divergence by size, lr under OneCycle --------------


def scripted_validation(monkeypatch, losses):
    """validate() returns ``losses`` in turn; the weights at each call are recorded."""
    seen = []

    def validate(self):
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return losses[len(seen) - 1]

    monkeypatch.setattr(Trainer, "validate", validate)
    return seen


def test_the_epoch_with_the_lowest_validation_loss_is_written(toy, monkeypatch):
    seen = scripted_validation(monkeypatch, [3.0, 1.0, 2.0])
    status, metrics, out = run(toy, epochs=3)
    meta, state = read_model(out / "model.pt")
    assert status == "ok" and meta["selected_epoch"] == 2 and meta["epochs"] == 3
    assert all(torch.equal(state[k], seen[1][k]) for k in state)  # epoch 2's weights, not the last
    assert not all(torch.equal(state[k], seen[2][k]) for k in state)
    assert metrics["selected"].tolist() == [0, 1, 0]


def test_select_last_writes_the_final_epoch(toy, monkeypatch):
    seen = scripted_validation(monkeypatch, [3.0, 1.0, 2.0])
    _, metrics, out = run(toy, epochs=3, select="last")
    meta, state = read_model(out / "model.pt")
    assert meta["selected_epoch"] == 3 and all(torch.equal(state[k], seen[2][k]) for k in state)
    assert metrics["selected"].tolist() == [0, 0, 1]


def test_the_best_epoch_survives_a_resume(toy, monkeypatch, interrupt_training):
    scripted_validation(monkeypatch, [3.0, 1.0, 2.0, 5.0])
    restore = interrupt_training(at=3)
    with pytest.raises(KeyboardInterrupt):
        run(toy, epochs=4)
    restore()
    saved = checkpoint.read_checkpoint(toy / "m" / "checkpoint.pt")
    assert saved["meta"]["best_epoch"] == 2 and saved["best_model"] is not None
    scripted_validation(monkeypatch, [5.0, 5.0])  # the resumed epochs 3 and 4 are worse
    _, _, out = run(toy, epochs=4)
    assert read_model(out / "model.pt")[0]["selected_epoch"] == 2


def test_an_exploding_loss_is_a_divergence(toy, monkeypatch):
    """A loss that grows 1000-fold without a NaN is restored and retried like one, and a run
    that keeps exploding is marked diverged rather than reported."""
    original = Trainer.train_epoch

    def exploding(self):
        stats = original(self)
        if stats is not None and self.epoch >= 1:
            stats["train_loss"] = 1e19
        return stats

    monkeypatch.setattr(Trainer, "train_epoch", exploding)
    status, metrics, _ = run(toy, epochs=3, divergence_retries=1)
    assert status == "diverged" and metrics["epoch"].tolist() == [1]


def test_a_non_finite_gradient_is_a_divergence(toy, monkeypatch):
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("inf")))
    with pytest.raises(DivergenceError, match="gradient became NaN/inf at epoch 1"):
        run(toy, on_divergence="error")


def test_lr_is_where_the_one_cycle_starts(toy):
    _, slow, _ = run(toy, name="slow", epochs=1, lr=1e-4, max_lr=1e-2)
    _, fast, _ = run(toy, name="fast", epochs=1, lr=1e-3, max_lr=1e-2)
    assert slow["train_loss"].iloc[0] != fast["train_loss"].iloc[0]  # lr takes effect
    with pytest.raises(ValueError, match=r"train.lr \(1e\+06\) is above train.max_lr"):
        run(toy, name="huge", epochs=1, lr=1e6)


def test_max_lr_without_a_one_cycle_is_a_config_error():
    from mmssl.config import ConfigError, validate

    config = {"train": {"scheduler": "none", "max_lr": 0.05}, "datasets": {"digits": {"kind": "two_view_mnist"}}}
    with pytest.raises(ConfigError, match=r"train.max_lr has no effect: dataset digits trains with train.scheduler: none"):
        validate(config)
    config = {"datasets": {"digits": {"kind": "two_view_mnist", "train": {"scheduler": "none", "max_lr": 0.05}}}}
    with pytest.raises(ConfigError, match=r"datasets.digits.train.max_lr has no effect"):
        validate(config)
    validate({"train": {"scheduler": "none", "lr": 1e-3}, "datasets": {"digits": {"kind": "two_view_mnist"}}})


# --- issue 21: a jump that never comes back is a divergence; gradient clipping ----------


def scripted_train_loss(monkeypatch, losses):
    """Each train_epoch() call (retries included) reports the next of ``losses`` as its
    training loss; the epoch itself trains for real."""
    original, calls = Trainer.train_epoch, []

    def train_epoch(self):
        stats = original(self)
        calls.append(self.epoch + 1)
        stats["train_loss"] = losses[len(calls) - 1]
        return stats

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    return calls


def test_a_jump_that_stays_up_is_undone_at_a_lower_rate(toy, monkeypatch):
    """S fold 1 of the fidelity config: 2.25 at epoch 4, then 17 and 671 (85 x the first
    epoch's, under the explosion bound of 100 x) and it never came back. Caught after two
    epochs up; the run goes back to the epoch before the jump at a 10 x lower rate."""
    calls = scripted_train_loss(monkeypatch, [7.7, 4.0, 2.5, 2.25, 17.3, 671.0, 2.2, 2.1])
    status, metrics, _ = run(toy, epochs=6, scheduler="none", lr=1e-3, divergence_retries=1)
    assert status == "ok" and calls == [1, 2, 3, 4, 5, 6, 5, 6]  # epochs 5 and 6 trained again
    assert metrics["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert metrics["train_loss"].tolist() == pytest.approx([7.7, 4.0, 2.5, 2.25, 2.2, 2.1])
    assert metrics["lr"].tolist() == pytest.approx([1e-3] * 4 + [1e-4] * 2)


def test_a_jump_that_stays_up_again_marks_the_run_diverged(toy, monkeypatch):
    scripted_train_loss(monkeypatch, [7.7, 4.0, 2.5, 2.25, 17.3, 671.0])
    status, metrics, _ = run(toy, epochs=6, divergence_retries=0)
    assert status == "diverged" and metrics["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_a_jump_that_stays_up_can_stop_with_a_clear_error(toy, monkeypatch):
    scripted_train_loss(monkeypatch, [7.7, 4.0, 2.5, 2.25, 17.3, 671.0])
    with pytest.raises(DivergenceError, match=r"loss jumped and stayed up \(17.3, 671 at epochs 5-6, over 3 x the best "
                                              r"before, 2.25\) at epoch 6"):
        run(toy, name="err", epochs=6, divergence_retries=0, on_divergence="error")


@pytest.mark.parametrize("losses", [
    [7.7, 4.0, 2.5, 2.25, 17.3, 2.3, 2.2, 2.1],   # a spike that comes back the next epoch
    [7.7, 4.0, 2.5, 2.25, 6.0, 6.5, 3.0, 2.1],    # up 2.9 x the best for two epochs: under 3 x
    [-2.0, -3.0, -2.9, -2.95, -2.8, -3.1, -3.0, -3.2],  # a negative loss wobbling (a CCA-like objective)
])
def test_a_spike_that_comes_back_is_left_alone(toy, monkeypatch, losses):
    calls = scripted_train_loss(monkeypatch, losses)
    status, metrics, _ = run(toy, epochs=8, scheduler="none", lr=1e-3, divergence_retries=0)
    assert status == "ok" and calls == list(range(1, 9))
    assert metrics["train_loss"].tolist() == pytest.approx(losses) and set(metrics["lr"]) == {1e-3}


def test_jump_epochs_0_turns_the_check_off(toy, monkeypatch):
    scripted_train_loss(monkeypatch, [7.7, 4.0, 2.5, 2.25, 17.3, 671.0])
    status, _, _ = run(toy, epochs=6, divergence_retries=0, jump_epochs=0)
    assert status == "ok"


def test_grad_clip_clips_the_total_norm_and_the_norm_is_logged(toy, monkeypatch):
    seen = []
    original = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *a, **k):
        params = list(params)
        norm = original(params, max_norm, *a, **k)
        after = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        seen.append((max_norm, float(norm), float(after)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    _, metrics, _ = run(toy, name="off", epochs=1)
    assert all(m == float("inf") and after == pytest.approx(n, rel=1e-5) for m, n, after in seen)  # default: no clip
    assert metrics["grad_norm"].iloc[0] == pytest.approx(max(n for _, n, _ in seen), rel=1e-5)
    seen.clear()
    _, metrics, _ = run(toy, name="on", epochs=1, grad_clip=1e-3)
    assert seen and all(m == 1e-3 and n > 1e-3 and after == pytest.approx(1e-3, rel=1e-3) for m, n, after in seen)
    assert metrics["grad_norm"].iloc[0] > 1e-3  # the norm before clipping

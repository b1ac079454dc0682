"""Training of one (method, fold): the job each Snakemake ``train`` rule runs (the
:class:`Trainer` and the rule's entry point :func:`train`; its settings are
:mod:`mmssl.train.settings`, its batches :mod:`mmssl.train.loader`, its optimiser
:mod:`mmssl.train.optim`).

Resumable: a checkpoint (model, optimiser, scheduler, RNG state, metrics so far) is
written atomically after every epoch beside the outputs (``checkpoint.pt``, see
:mod:`mmssl.train.checkpoint`); a restarted job (SLURM pre-emption, a killed laptop run)
continues from it. The declared outputs ``model.pt``
and ``metrics.tsv`` are written only when training ends, so a half-trained model never
looks finished.

Divergence: when a loss becomes NaN/inf, an epoch's training loss explodes
(``divergence_factor`` times the first epoch's) or jumps and stays up (``jump_factor``
times its best so far for ``jump_epochs`` epochs in a row), the last good state (for a
jump: the one before it began) is restored, the learning rate is lowered once
(``lr_drop``) and training continues; if it diverges again the run ends with status
``diverged`` (or raises, with ``on_divergence: error``), and later steps report
"diverged" in place of numbers.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mmssl.augment import AugmentSettings, augment
from mmssl.data.prefetch import prefetched
from mmssl.data.splits import read_split, rows_of
from mmssl.data.store import Store, read_store
from mmssl.data.two_view import redraw_views
from mmssl.device import select_device
from mmssl.io import atomic_path
from mmssl.objectives import build_method
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.model_file import model_meta, save_model
from mmssl.progress import Progress
from mmssl.train.checkpoint import read_checkpoint, save_checkpoint
from mmssl.train.loader import Batch, BatchLoader
from mmssl.train.optim import make_optimizer, scale_lr
from mmssl.train.settings import RUNTIME_KEYS, TrainSettings, autocast_enabled

# the package's name, not this module's: rule logs and tests filter on "mmssl.train"
log = logging.getLogger("mmssl.train")


class DivergenceError(RuntimeError):
    """A loss became NaN or infinite and could not be recovered."""


def fingerprint(*parts: Any) -> str:
    """Hash of everything that shapes a run; a checkpoint from other settings is not resumed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Trainer:
    """Trains one method on one fold of one store; see the module docstring."""

    def __init__(self, method: str, store: Store, split: pd.DataFrame, out_dir: Path, settings: TrainSettings,
                 model_settings: ModelSettings, fold: int, label: str = ""):
        self.method_name, self.store, self.out_dir = method, store, Path(out_dir)
        self.settings, self.model_settings, self.fold = settings, model_settings, fold
        self.label = label or f"{method} fold {fold}"
        self.device = select_device(settings.device)
        self.train_rows = rows_of(store.index, split, "train")
        self.val_rows = rows_of(store.index, split, "val")
        seed = settings.seed * 1000 + fold
        torch.manual_seed(seed)
        n_labels = store.index["label"].nunique()
        # for methods that use labels (supervised); a store of one label leaves it unset, and
        # such a method then stops saying so
        if model_settings.extra["n_classes"] is None and n_labels >= 2:
            model_settings = replace(model_settings, extra={**model_settings.extra, "n_classes": n_labels})
            self.model_settings = model_settings
        self.model = build_method(method, store.sources, model_settings).to(self.device)
        self.train_rows, self.val_rows = self.training_rows(self.train_rows), self.training_rows(self.val_rows)
        if len(self.train_rows) < settings.batch_size:  # after train.incomplete_samples chose the rows
            raise ValueError(f"{self.label}: {len(self.train_rows)} training samples, fewer than one batch of "
                             f"{settings.batch_size}")
        # Two-View with views: redraw: training batches carry the digits their views are drawn from
        self.redraw = store.meta.get("views") == "redraw"
        columns = self.model.metadata_columns
        self.check_metadata(columns)
        self.train_loader = BatchLoader(store, self.train_rows, settings.batch_size, shuffle=True,
                                        balanced=settings.balanced, seed=seed, pin_memory=self.device.type == "cuda",
                                        extra=self.redraw, meta_columns=columns)
        self.val_loader = BatchLoader(store, self.val_rows, settings.batch_size, shuffle=False, balanced=False, seed=seed,
                                      meta_columns=columns)
        self.steps_per_epoch = len(self.train_loader) if not settings.max_batches else min(len(self.train_loader), settings.max_batches)
        self.opt, self.sched = make_optimizer(self.model, settings, settings.epochs * self.steps_per_epoch)
        self.aug = AugmentSettings.from_config(settings.augment)
        self.gen = torch.Generator().manual_seed(seed)
        self.rows: list[dict[str, Any]] = []
        self.epoch = 0
        self.retries_left = settings.divergence_retries
        # the epoch with the lowest validation loss so far: epoch, val_loss, model (CPU copy)
        self.best: dict[str, Any] | None = None
        self.divergence = ""  # what the last divergence was, for the message
        # epochs to go back on a divergence: 1 = the last good state (self._good); a
        # sustained jump goes back to the state before its first epoch
        self._back = 1
        # the last good states, newest last: one per epoch, as many as a sustained jump spans
        self._goods: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(settings.jump_epochs, 1))
        self.ckpt_path = self.out_dir / "checkpoint.pt"
        shaping = {k: v for k, v in asdict(settings).items() if k not in RUNTIME_KEYS}
        self.fp = fingerprint(method, fold, shaping, asdict(model_settings), [asdict(s) for s in store.sources],
                              len(self.train_rows))
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def check_metadata(self, columns: tuple[str, ...]) -> None:
        """The store index must hold every metadata column the method needs, numeric and
        known for each training and validation sample: else a ValueError naming the
        column, the store and the samples without a value."""
        index = self.store.index
        for column in columns:
            if column not in index.columns:
                raise ValueError(f"{self.label}: needs the metadata column {column!r}, which {self.store.path / 'index.tsv'} "
                                 f"lacks (columns: {list(index.columns)}); set model.criteria.yaware.column to one of them")
            values = pd.to_numeric(index[column], errors="coerce").to_numpy()
            rows = np.concatenate([self.train_rows, self.val_rows])
            bad = rows[~np.isfinite(values[rows])]
            if len(bad):
                raise ValueError(f"{self.label}: metadata column {column!r} of {self.store.path / 'index.tsv'} has no "
                                 f"numeric value for {len(bad)} training/validation samples, e.g. "
                                 f"{index['sample'].iloc[bad[:5]].tolist()}")

    def training_rows(self, rows: np.ndarray) -> np.ndarray:
        """The store rows this run trains (or validates) on: all of ``rows`` under
        train.incomplete_samples 'use' when the method supports partial samples, else the complete
        samples only; the choice and the counts are logged."""
        if not self.store.has_missing:
            return rows
        complete = self.store.complete[rows]
        use = self.settings.incomplete_samples == "use" and self.model.supports_missing
        if self.settings.incomplete_samples == "use" and not self.model.supports_missing:
            log.warning("%s: %s trains on complete samples only (train.incomplete_samples 'use' does not apply to it): "
                        "%d of %d samples", self.label, self.method_name, int(complete.sum()), len(rows))
        counts = ", ".join(f"{s} {int(self.store.present(s)[rows].sum())}" for s in self.store.source_names)
        log.info("%s: %d of %d samples complete (samples with each source: %s); %s", self.label, int(complete.sum()),
                 len(rows), counts, "all used" if use else "complete samples only")
        return rows if use else rows[complete]

    # --- checkpoints -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit: ``meta`` holds the plain
        values (stored as JSON), the rest are state dicts and RNG state tensors."""
        best = self.best or {}
        # "columns": the rows' key order, which the checkpoint's JSON (sorted keys) would lose,
        # so a resumed run writes metrics.tsv with the columns of an uninterrupted one
        meta = {"fingerprint": self.fp, "epoch": self.epoch, "rows": self.rows,
                "columns": list(self.rows[0]) if self.rows else [], "retries_left": self.retries_left,
                "np_rng": self.train_loader.rng.bit_generator.state, "best_epoch": best.get("epoch"),
                "best_val_loss": best.get("val_loss")}
        return {"meta": meta, "model": self.model.state_dict(), "best_model": best.get("model"), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "torch_rng": torch.get_rng_state(), "gen_rng": self.gen.get_state()}

    def save_checkpoint(self) -> None:
        state = self.state()
        save_checkpoint(self.ckpt_path, state)
        self._set_good(copy.deepcopy(state))

    def _set_good(self, state: dict[str, Any]) -> None:
        """Record ``state`` as the newest good one (the states a divergence can go back to)."""
        self._good = state
        self._goods.append(state)

    def load_state(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        meta = st["meta"]
        order = meta.get("columns", [])
        self.rows = [{**{c: row[c] for c in order if c in row}, **row} for row in meta["rows"]]
        self.epoch, self.retries_left = meta["epoch"], meta["retries_left"]
        self.best = (None if meta.get("best_epoch") is None else
                     {"epoch": meta["best_epoch"], "val_loss": meta["best_val_loss"], "model": st["best_model"]})
        torch.set_rng_state(st["torch_rng"])
        self.gen.set_state(st["gen_rng"])
        self.train_loader.rng.bit_generator.state = meta["np_rng"]

    def try_resume(self) -> None:
        self._set_good(copy.deepcopy(self.state()))
        if not self.ckpt_path.exists():
            return
        st = read_checkpoint(self.ckpt_path)
        if st["meta"].get("fingerprint") != self.fp:
            log.warning("%s: %s was written with other settings; starting from scratch", self.label, self.ckpt_path)
            return
        self.load_state(st)
        # a copy: the optimiser keeps the loaded tensors as its own state and steps them in place
        # (the states of the epochs before it are not in the checkpoint: a jump that began
        # before the resume goes back to here)
        self._goods.clear()
        self._set_good(copy.deepcopy(st))
        log.info("%s: resumed from %s at epoch %d", self.label, self.ckpt_path, self.epoch)

    # --- epochs ------------------------------------------------------------------
    def _to_device(self, batch: Batch) -> Batch:
        nb = self.device.type == "cuda"

        def move(d: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
            return None if d is None else {k: v.to(self.device, non_blocking=nb) for k, v in d.items()}

        # half the bytes over PCIe, and the float16 -> float32 cast runs on the device
        return Batch({k: v.to(self.device, non_blocking=nb).float() for k, v in batch.x.items()},
                     batch.y.to(self.device, non_blocking=nb), move(batch.present), move(batch.meta))

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=autocast_enabled(self.settings.amp, self.device))

    def train_epoch(self) -> dict[str, float] | None:
        """One epoch; the mean of each loss term, ``samples`` and ``data_s`` (host seconds
        spent waiting for batches and handing them to the device: what a GPU would idle
        on), or None if a loss became non-finite."""
        self.model.train()
        bar = tqdm(total=self.steps_per_epoch, desc=f"{self.label} epoch {self.epoch + 1}", leave=False,
                   disable=not sys.stderr.isatty())
        batches = prefetched(self.train_loader, self.settings.prefetch)
        try:
            return self._run_batches(batches, bar)
        finally:
            batches.close()  # stops the prefetch thread when the epoch ends early
            bar.close()

    def _run_batches(self, batches, bar) -> dict[str, float] | None:
        sums: dict[str, float] = {}
        n_batches = n_samples = skipped = 0
        data_s = grad_max = 0.0
        for i in range(self.steps_per_epoch):
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            xs, y, present, meta = self._to_device(batch)
            if self.redraw:
                xs = redraw_views(xs, self.gen)
            data_s += time.perf_counter() - t0
            if self.aug.active:
                xs = augment(xs, self.aug, self.gen)
            with self._autocast():
                terms = self.model.losses(xs, y, present, meta)
            if not terms:
                # a batch whose samples share no source any term needs (possible only with
                # missing sources): no loss to step on
                skipped += 1
                continue
            total = sum(terms.values())
            if not torch.isfinite(total):
                self.divergence = "loss became NaN/inf"
                log.error("%s: non-finite loss at epoch %d batch %d: %s", self.label, self.epoch + 1, i,
                          {k: float(v.detach()) for k, v in terms.items()})
                return None
            self.opt.zero_grad(set_to_none=True)
            total.backward()
            # the total gradient norm, before clipping (train.grad_clip; 0 = max_norm inf: nothing
            # is clipped, the paper's and the authors' code); a non-finite one would write
            # inf/NaN into the weights at this step
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip or float("inf"))
            if not torch.isfinite(norm):
                self.divergence = "gradient became NaN/inf"
                log.error("%s: non-finite gradient at epoch %d batch %d", self.label, self.epoch + 1, i)
                return None
            grad_max = max(grad_max, float(norm))
            self.opt.step()
            self.sched.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_batches += 1
            n_samples += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{float(total.detach()):.3f}")
        if skipped:
            log.warning("%s: %d batches of epoch %d had no samples any loss term could use", self.label, skipped,
                        self.epoch + 1)
        out = {k: v / max(n_batches, 1) for k, v in sums.items()}
        out["train_loss"] = sum(out.values())
        out["grad_norm"] = grad_max  # the epoch's largest gradient norm, before clipping
        out["samples"] = n_samples
        out["data_s"] = data_s
        return out

    @torch.no_grad()
    def validate(self) -> float:
        if len(self.val_rows) < 2 or not any(p.requires_grad for p in self.model.parameters()):
            return float("nan")
        self.model.eval()
        total, n = 0.0, 0
        for batch in self.val_loader:
            if len(batch.y) < 2:
                continue
            xs, y, present, meta = self._to_device(batch)
            with self._autocast():
                terms = self.model.losses(xs, y, present, meta)
            if terms:
                total += float(sum(terms.values())) * len(y)
                n += len(y)
        return total / max(n, 1)

    def handle_divergence(self) -> bool:
        """Restore the last good state (``self._back`` epochs back, as far as the kept states
        reach) and lower the lr; False when no retry is left."""
        back, self._back = self._back, 1
        if self.retries_left <= 0:
            return False
        retries = self.retries_left - 1
        # the states after the one restored belong to the epochs being undone
        for _ in range(min(back, len(self._goods)) - 1):
            self._goods.pop()
        self._good = self._goods[-1]
        # from a copy: the optimiser adopts the given state tensors and would step the
        # saved good state in place, spoiling a second restore before the next checkpoint
        self.load_state(copy.deepcopy(self._good))
        self.retries_left = retries
        scale_lr(self.opt, self.sched, self.settings.lr_drop)
        log.warning("%s: restored epoch %d and lowered the learning rate by %g (%d retries left)",
                    self.label, self.epoch, self.settings.lr_drop, retries)
        return True

    def fit(self) -> str:
        """Train all epochs; returns the final status, 'ok' or 'diverged'."""
        self.try_resume()
        trainable = any(p.requires_grad for p in self.model.parameters()) and getattr(self.model, "trainable", True)
        epochs = self.settings.epochs if trainable else 0
        # "<label>: epoch N/M: losses ... (elapsed, ETA)": a log line a reader of a SLURM log can use
        progress = Progress(f"{self.label}: epoch", epochs, log, start=self.epoch)
        while self.epoch < epochs:
            t0 = time.perf_counter()
            stats = self.train_epoch()
            if stats is not None and (self.exploded(stats["train_loss"]) or self.jumped(stats["train_loss"])):
                stats = None
            if stats is None:
                if self.handle_divergence():
                    continue
                msg = f"{self.label}: {self.divergence} at epoch {self.epoch + 1} and did not recover"
                if self.settings.on_divergence == "error":
                    raise DivergenceError(msg)
                log.error("%s; marking the run as diverged", msg)
                return "diverged"
            seconds = time.perf_counter() - t0
            self.epoch += 1
            row = {"epoch": self.epoch, **{k: v for k, v in stats.items() if k not in ("samples", "data_s")},
                   "val_loss": self.validate(), "lr": self.opt.param_groups[0]["lr"], "seconds": round(seconds, 3),
                   "samples_per_s": round(stats["samples"] / max(seconds, 1e-9), 1),
                   "data_s": round(stats["data_s"], 3), "data_fraction": round(stats["data_s"] / max(seconds, 1e-9), 3)}
            self.rows.append(row)
            self.keep_if_best(row["val_loss"])
            progress.step(self.epoch, "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in row.items() if k != "epoch"))
            self.save_checkpoint()
        return "ok"

    def exploded(self, loss: float) -> bool:
        """An epoch's mean training loss ``divergence_factor`` times the first epoch's (in
        absolute value; the first epoch's taken as at least 1, so a near-zero start is no
        hair trigger): a run that blew up without a NaN, e.g. to 1e19."""
        if not self.rows:
            return False
        bound = self.settings.divergence_factor * max(abs(self.rows[0]["train_loss"]), 1.0)
        if abs(loss) <= bound:
            return False
        self.divergence = f"loss exploded ({loss:.3g}, over {self.settings.divergence_factor:g} x the first epoch's)"
        log.error("%s: training loss %.4g at epoch %d exceeds %g x the first epoch's (bound %.4g)", self.label, loss,
                  self.epoch + 1, self.settings.divergence_factor, bound)
        return True

    def jumped(self, loss: float) -> bool:
        """A sustained jump: this epoch's training loss and those of the ``jump_epochs`` - 1
        epochs before it all above ``jump_factor`` times the best (lowest) training loss of
        the epochs before them (measured from it: best + (jump_factor - 1) * max(|best|, 1),
        so a loss near zero or below is no hair trigger). A spike that comes back within
        ``jump_epochs`` epochs is left alone; a loss that jumps and stays up (S at the
        one-cycle peak, benchmarks/README.md, issue 21) is a divergence, undone back to the
        epoch before the jump. jump_epochs 0 turns the check off."""
        m = self.settings.jump_epochs
        if m <= 0 or len(self.rows) < m:  # at least one epoch before the streak to measure it from
            return False
        streak = [r["train_loss"] for r in self.rows[len(self.rows) - m + 1:]] + [loss]
        before = [r["train_loss"] for r in self.rows[: len(self.rows) - m + 1]]
        best = min(before)
        bound = best + (self.settings.jump_factor - 1) * max(abs(best), 1.0)
        if min(streak) <= bound:
            return False
        self._back = m
        first = self.epoch + 2 - m
        self.divergence = (f"loss jumped and stayed up ({', '.join(f'{v:.3g}' for v in streak)} at epochs "
                           f"{first}-{self.epoch + 1}, over {self.settings.jump_factor:g} x the best before, {best:.3g})")
        log.error("%s: training loss above %.4g (%g x the best before, %.4g) for %d epochs in a row (epochs %d-%d)",
                  self.label, bound, self.settings.jump_factor, best, m, first, self.epoch + 1)
        return True

    def keep_if_best(self, val_loss: float) -> None:
        """Keep a CPU copy of the weights when this epoch's validation loss is the lowest yet."""
        if self.settings.select != "best" or not np.isfinite(val_loss):
            return
        if self.best is None or val_loss < self.best["val_loss"]:
            self.best = {"epoch": self.epoch, "val_loss": float(val_loss),
                         "model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}}

    def selected(self) -> tuple[int, dict[str, torch.Tensor]]:
        """(epoch, weights) of the encoder to write: the best epoch's (train.select: best,
        when a validation loss was measured) or the last one's."""
        if self.settings.select == "best" and self.best is not None:
            return self.best["epoch"], self.best["model"]
        if self.settings.select == "best" and self.epoch > 0:
            log.warning("%s: no finite validation loss to select the best epoch by; writing the last (%d)", self.label,
                        self.epoch)
        return self.epoch, self.model.state_dict()

    def write_outputs(self, status: str, model_path: Path, metrics_path: Path) -> None:
        """model.pt (the selected epoch's weights; none for a diverged run) and metrics.tsv
        (one row per epoch, the run's status in every row, ``selected`` marking the epoch
        written; a header-only table for an untrained method)."""
        epoch, weights = self.selected()
        meta = model_meta(self.method_name, self.fold, status, self.epoch, [asdict(s) for s in self.store.sources],
                          asdict(self.model_settings), asdict(self.settings), str(self.device))
        meta["selected_epoch"] = epoch
        save_model(model_path, meta, weights if status == "ok" else None)
        metrics = pd.DataFrame(self.rows) if self.rows else pd.DataFrame({"epoch": []})
        metrics.insert(0, "status", status)
        metrics["selected"] = (metrics["epoch"] == epoch).astype(int)
        with atomic_path(metrics_path) as tmp:  # 6 significant digits: a readable log, not a store
            metrics.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def train(store_dir: str | Path, split_tsv: str | Path, method: str, fold: int, model_path: str | Path,
          metrics_path: str | Path, settings: dict | None = None, model_settings: dict | None = None) -> str:
    """File-in/file-out entry point of the ``train`` rule. Returns the run's status."""
    model_path, metrics_path = Path(model_path), Path(metrics_path)
    store = read_store(store_dir)
    trainer = Trainer(method, store, read_split(split_tsv), model_path.parent, TrainSettings.from_config(settings),
                      ModelSettings.from_config(model_settings), fold)
    log.info("%s: %d train / %d val samples on %s (%s)", trainer.label, len(trainer.train_rows), len(trainer.val_rows),
             trainer.device, "bf16 autocast" if autocast_enabled(trainer.settings.amp, trainer.device) else "fp32")
    if trainer.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    status = trainer.fit()
    trainer.write_outputs(status, model_path, metrics_path)
    # checkpoint.pt is resume state, not a result: it is not a declared output (Snakemake
    # deletes a failed job's outputs, which would leave nothing to resume from), so it must
    # not outlive the run it belongs to
    trainer.ckpt_path.unlink(missing_ok=True)
    return status


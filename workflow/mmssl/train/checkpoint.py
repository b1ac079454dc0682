"""checkpoint.pt: a training run's resume state, beside model.pt, rewritten after every
epoch and removed once model.pt is written; read with the same safe loader as model.pt
(:mod:`mmssl.objectives.model_file`, which says why)::

    format      int                      FORMAT
    meta        str, JSON object         fingerprint, epoch, rows (metrics.tsv rows so far),
                                         retries_left, np_rng (the batch order's PCG64 state),
                                         best_epoch, best_val_loss (None before a validation)
    model       {name: tensor}           model state dict
    best_model  {name: tensor} or None   the weights of best_epoch
    opt, sched  dict                     optimiser / LR scheduler state dicts
    torch_rng, gen_rng  (K,) uint8       global torch and augmentation generator states
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mmssl.io import atomic_path
from mmssl.objectives.model_file import FORMAT, safe_load


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write checkpoint.pt atomically. ``state``: meta (a JSON-able dict), model, opt,
    sched, torch_rng, gen_rng (see the module docstring)."""
    payload = {**state, "format": FORMAT, "meta": json.dumps(state["meta"], sort_keys=True)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The ``state`` given to :func:`save_checkpoint`, tensors on the CPU."""
    payload = safe_load(Path(path), "checkpoint")
    state = {k: v for k, v in payload.items() if k != "format"}
    state["meta"] = json.loads(payload["meta"])
    return state

"""Frozen-encoder latents for evaluation: the ``embed`` rule writes, per (method, fold),
``z`` of every source for the samples of the evaluation splits, read by the probe and
the similarity rules (so the encoder runs once, not once per analysis).

File format (.npz, read back without pickle)::

    z__<source>  (N, latent) float32   raw latent z, one array per source
    sources      (S,) str              source names, in store order
    split        (N,) str              train | val | test | holdout
    label        (N,) int or str       class label
    subject      (N,) str              subject id
    sample       (N,) str              sample (pair) id
    status       () str                'ok', or 'diverged' when training did not recover:
                                       then N = 0 and the later steps report "diverged"
    epoch        () int                the epoch whose weights model.pt holds (its meta's
                                       ``selected_epoch``, else ``epochs``); absent when
                                       the model file records none

One pair per subject (``one_per_subject``, which the rule sets for brain MRI, as the
paper's probe does) is decided here and nowhere else: the probe and the similarity
analysis use every row of the latents they are given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmssl.data.splits import read_split
from mmssl.data.store import read_store
from mmssl.io import atomic_path
from mmssl.objectives.base import Method
from mmssl.train.checkpoint import load_model
from mmssl.train.loop import select_device


def unicode_or_numeric(values: pd.Series) -> np.ndarray:
    """Integer labels stay integers; anything else becomes a unicode array, since object
    arrays would need pickle to be read back."""
    arr = values.to_numpy()
    return arr if arr.dtype.kind in "iuf" else values.to_numpy(dtype=str)


def evaluation_rows(index: pd.DataFrame, split: pd.DataFrame, one_per_subject: bool) -> pd.DataFrame:
    """Store rows of the subjects in the split table, with their split, in store order.

    index: the store's index (row, sample, subject, label, ...); split: one fold's split
    table (subject, label, split). With ``one_per_subject`` only each subject's first
    sample in store order (lowest ``row``) is kept: a fixed choice, the same in every
    fold and for every method, so their latents describe the same samples.
    """
    rows = index.merge(split[["subject", "split"]], on="subject", how="inner")
    if one_per_subject:
        rows = rows.sort_values("row").drop_duplicates("subject", keep="first")
    return rows.sort_values("row").reset_index(drop=True)


@torch.no_grad()
def encode(model: Method, arrays: dict[str, np.ndarray], rows: np.ndarray, device: torch.device,
           batch_size: int = 256) -> dict[str, np.ndarray]:
    """z for every source: arrays source -> (N_store, C, *S), rows (R,) -> source -> (R, latent) float32."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in arrays}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for name, arr in arrays.items():
            x = torch.from_numpy(np.asarray(arr[chunk], dtype=np.float32)).to(device)
            out[name].append(model.embed(x, name).float().cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in out.items()}


def chosen_epoch(meta: dict) -> int | None:
    """The model's chosen epoch: meta["selected_epoch"] (the best validation epoch, when
    training records it), else meta["epochs"] (the last epoch run); None when neither is
    recorded. A diverged run keeps what its meta says."""
    value = meta["selected_epoch"] if "selected_epoch" in meta else meta.get("epochs")
    return None if value is None else int(value)


def embed(store_dir: str | Path, split_tsv: str | Path, model_path: str | Path, out_npz: str | Path,
          one_per_subject: bool = False, device: str = "auto") -> Path:
    """File-in/file-out entry point of the ``embed`` rule; see the module docstring. A
    diverged run (model.pt without weights) gives a latents file with N = 0 and status
    'diverged'."""
    out_npz = Path(out_npz)
    dev = select_device(device)
    store = read_store(store_dir)
    model, meta = load_model(model_path, dev)
    rows = evaluation_rows(store.index, read_split(split_tsv), one_per_subject)
    names = store.source_names
    if model is None:
        rows = rows.iloc[:0]
        latents = {n: np.zeros((0, meta["model_settings"]["latent"]), np.float32) for n in names}
    else:
        latents = encode(model, store.arrays, rows["row"].to_numpy(), dev)
    epoch = chosen_epoch(meta)
    extra = {} if epoch is None else {"epoch": np.array(epoch, dtype=np.int64)}
    # through an open file: np.savez would append ".npz" to a temporary name without it
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{f"z__{n}": latents[n] for n in names}, sources=np.array(names),
                 split=rows["split"].to_numpy(dtype=str), label=unicode_or_numeric(rows["label"]),
                 subject=rows["subject"].to_numpy(dtype=str), sample=rows["sample"].to_numpy(dtype=str),
                 status=np.array(meta["status"]), **extra)
    return out_npz

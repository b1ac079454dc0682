"""Frozen-encoder latents for evaluation: the ``embed`` rule writes, per (method, fold),
``z`` of every source for the samples of the evaluation splits, read by the probe and
the similarity rules (so the encoder runs once, not once per analysis).

File format (.npz): ``z__<source>`` (N, latent) float32 per source, ``sources`` (names
in order), ``split``, ``label``, ``subject``, ``sample`` (N,), and ``status`` ('ok' or
'diverged'; a diverged run has N = 0).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmssl.data.splits import read_split
from mmssl.data.store import read_store
from mmssl.train import load_model, select_device


def unicode_or_numeric(values: pd.Series) -> np.ndarray:
    """Integer labels stay integers; anything else becomes a unicode array, since object
    arrays would need pickle to be read back."""
    arr = values.to_numpy()
    return arr if arr.dtype.kind in "iuf" else values.to_numpy(dtype=str)


def evaluation_rows(index: pd.DataFrame, split: pd.DataFrame, one_per_subject: bool) -> pd.DataFrame:
    """Store rows of subjects in any split, with their split; with ``one_per_subject``
    only each subject's first sample (the paper's probe uses one pair per subject)."""
    rows = index.merge(split[["subject", "split"]], on="subject", how="inner")
    if one_per_subject:
        rows = rows.sort_values("row").drop_duplicates("subject", keep="first")
    return rows.sort_values("row").reset_index(drop=True)


@torch.no_grad()
def encode(model, arrays: dict[str, np.ndarray], rows: np.ndarray, device: torch.device, batch_size: int = 256) -> dict[str, np.ndarray]:
    """z for every source: source -> (len(rows), latent) float32."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in arrays}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for name, arr in arrays.items():
            x = torch.from_numpy(np.asarray(arr[chunk], dtype=np.float32)).to(device)
            out[name].append(model.embed(x, name).float().cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in out.items()}


def embed(store_dir: str | Path, split_tsv: str | Path, model_path: str | Path, out_npz: str | Path,
          one_per_subject: bool = False, device: str = "auto") -> Path:
    """File-in/file-out entry point of the ``embed`` rule."""
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
    tmp = out_npz.with_name(out_npz.name + ".tmp.npz")
    np.savez(tmp, **{f"z__{n}": latents[n] for n in names}, sources=np.array(names),
             split=rows["split"].to_numpy(dtype=str), label=unicode_or_numeric(rows["label"]),
             subject=rows["subject"].to_numpy(dtype=str), sample=rows["sample"].to_numpy(dtype=str),
             status=np.array(meta["status"]))
    os.replace(tmp, out_npz)
    return out_npz

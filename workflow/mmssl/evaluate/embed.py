"""Frozen-encoder latents for evaluation: the ``embed`` rule writes, per (method, fold),
``z`` of every source for the samples of the evaluation splits, read by the probe and
the similarity rules (so the encoder runs once, not once per analysis). The file format
is :mod:`mmssl.evaluate.latents`'s.

Which rows each analysis uses is decided here and nowhere else (:func:`evaluation_rows`);
the probe and the similarity analysis take exactly the rows the file marks for them:

- the probe of source k: every sample of the fold's subjects that has k; with
  ``one_per_subject`` (which the rule sets for brain MRI, as the paper's probe does), each
  subject's first sample in store order that has k;
- the similarity of sources a and b: the samples that have both (so both latents come
  from the same sample); with ``one_per_subject``, each subject's first sample in store
  order that has both.

The file holds the union of these rows. A source is encoded only on the rows whose
sample has it: an absent source's array rows are zeros, never data, and its z there is
NaN. For a store where every sample has every source, every analysis uses every row, and
the rows and z are those of the single choice made before samples could lack a source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmssl.data.splits import read_split
from mmssl.data.store import presence, read_store
from mmssl.device import select_device
from mmssl.evaluate.latents import analyses, present_key, save_latents, use_key
from mmssl.objectives.base import Method
from mmssl.objectives.model_file import load_model


def unicode_or_numeric(values: pd.Series) -> np.ndarray:
    """Integer labels stay integers; anything else becomes a unicode array, since object
    arrays would need pickle to be read back."""
    arr = values.to_numpy()
    return arr if arr.dtype.kind in "iuf" else values.to_numpy(dtype=str)


def first_per_subject(subject: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R,) bool: of the rows in ``mask``, each subject's first one (rows in store order)."""
    chosen = np.zeros(len(mask), dtype=bool)
    rows = np.flatnonzero(mask)
    chosen[rows[~pd.Series(subject[rows]).duplicated().to_numpy()]] = True
    return chosen


def evaluation_rows(index: pd.DataFrame, split: pd.DataFrame, one_per_subject: bool, sources: list[str]) -> pd.DataFrame:
    """Store rows of the subjects in the split table, with their split, in store order, and
    which analysis uses each row.

    index: the store's index (row, sample, subject, label, [has_<source>], ...); split: one
    fold's split table (subject, label, split); sources: the store's source names.
    Returns the index's columns plus split, ``present__<source>`` (the row has the source)
    and ``use__<name>`` for every analysis name of :func:`mmssl.evaluate.latents.analyses`
    (bool columns): all the rows having what an analysis needs, or with ``one_per_subject``
    each subject's first such row (lowest ``row``). A fixed choice, the same in every fold
    and for every method, so their latents describe the same samples. Only the rows some
    analysis uses are kept.
    """
    rows = index.merge(split[["subject", "split"]], on="subject", how="inner").sort_values("row").reset_index(drop=True)
    marks = presence(rows, sources)
    subject = rows["subject"].to_numpy(dtype=str)
    use = {}
    for name, needs in analyses(sources).items():
        having = np.logical_and.reduce([marks[s] for s in needs])
        use[name] = first_per_subject(subject, having) if one_per_subject else having
    rows = rows.assign(**{present_key(s): marks[s] for s in sources}, **{use_key(k): v for k, v in use.items()})
    return rows[np.logical_or.reduce(list(use.values()))].reset_index(drop=True)


@torch.no_grad()
def encode(model: Method, arrays: dict[str, np.ndarray], rows: np.ndarray, present: dict[str, np.ndarray], dim: int,
           device: torch.device, batch_size: int = 256) -> dict[str, np.ndarray]:
    """z of every source on the rows having it.

    arrays: source -> (N_store, C, *S); rows: (R,) store rows; present: source -> (R,) bool,
    the rows whose sample has the source; dim: the latent size. Returns source -> (R, dim)
    float32, NaN on the rows without the source: those are never fed to the encoder (their
    array rows are zeros, not data), and a NaN makes any later use of them fail loudly.
    """
    out = {}
    for name, arr in arrays.items():
        mine = rows[present[name]]
        z = np.full((len(rows), dim), np.nan, dtype=np.float32)
        # batches of consecutive rows having the source: for a complete store the same
        # batches as before samples could lack a source, so the same z to the bit
        parts = [model.embed(torch.from_numpy(np.asarray(arr[mine[start:start + batch_size]], dtype=np.float32)).to(device),
                             name).float().cpu().numpy() for start in range(0, len(mine), batch_size)]
        if parts:
            z[present[name]] = np.concatenate(parts)
        out[name] = z
    return out


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
    dev = select_device(device)
    store = read_store(store_dir)
    model, meta = load_model(model_path, dev)
    names = store.source_names
    rows = evaluation_rows(store.index, read_split(split_tsv), one_per_subject, names)
    dim = int(meta["model_settings"]["latent"])
    if model is None:  # diverged: no weights, so no rows
        rows = rows.iloc[:0]
    present = {s: rows[present_key(s)].to_numpy(dtype=bool) for s in names}
    latents = ({s: np.zeros((0, dim), np.float32) for s in names} if model is None
               else encode(model, store.arrays, rows["row"].to_numpy(), present, dim, dev))
    columns = {"split": rows["split"].to_numpy(dtype=str), "label": unicode_or_numeric(rows["label"]),
               "subject": rows["subject"].to_numpy(dtype=str), "sample": rows["sample"].to_numpy(dtype=str)}
    use = {k: rows[use_key(k)].to_numpy(dtype=bool) for k in analyses(names)}
    return save_latents(out_npz, names, latents, present, use, columns, str(meta["status"]), chosen_epoch(meta))

"""Batches of a store's rows for training and validation: :class:`Batch` and the
(optionally class-balanced) :class:`BatchLoader`, whose numpy generator is the batch order's
resumable state (saved in checkpoint.pt)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from mmssl.data.store import Store


class Batch(NamedTuple):
    """x: {source: (B, C, *S) in the store's dtype}; y: (B,) class indices; present:
    {source: (B,) bool} when some of the loader's rows lack a source, else None (see
    :mod:`mmssl.objectives.base`); meta: {column: (B,) float32} for the store index columns
    the method asked for (``Method.metadata_columns``), else None."""

    x: dict[str, torch.Tensor]
    y: torch.Tensor
    present: dict[str, torch.Tensor] | None
    meta: dict[str, torch.Tensor] | None


class BatchLoader:
    """Yields :class:`Batch` es from the store rows. float16 stores stay float16 here: the cast to float32 costs ten times the
    gather on a CPU core, so it is left to the training device (``mmssl.train.loop.Trainer``).

    Gathers from the (memory-mapped) store arrays with sorted fancy indexing, which reads
    only the needed samples; class-balanced sampling draws rows with probability
    1/count(label) (with replacement), as a WeightedRandomSampler would."""

    def __init__(self, store: Store, rows: np.ndarray, batch_size: int, *, shuffle: bool, balanced: bool, seed: int,
                 pin_memory: bool = False, extra: bool = False, meta_columns: tuple[str, ...] = ()):
        self.store, self.rows, self.batch_size = store, rows, batch_size
        # the store's extra arrays (e.g. Two-View's digits) join the batch under their names
        self.arrays = {**store.arrays, **(store.extra if extra else {})}
        self.pin_memory = pin_memory  # page-locked batches make non_blocking copies to CUDA asynchronous
        self.shuffle, self.balanced = shuffle, balanced
        self.rng = np.random.default_rng(seed)
        # class indices over the whole store, so every split and fold agrees on them
        codes = pd.factorize(store.index["label"].to_numpy(), sort=True)[0]
        self.labels = codes[rows]
        present = {s: store.present(s)[rows] for s in store.source_names}
        self.present = None if all(m.all() for m in present.values()) else present
        self.meta = {c: store.index[c].to_numpy(dtype=np.float32)[rows] for c in meta_columns} or None
        if balanced:
            counts = np.bincount(self.labels)
            weights = 1.0 / counts[self.labels]
            self.p = weights / weights.sum()

    def __len__(self) -> int:
        # drop the last incomplete batch in training: BatchNorm and InfoNCE need > 1 sample
        return len(self.rows) // self.batch_size if self.shuffle else math.ceil(len(self.rows) / self.batch_size)

    def order(self) -> np.ndarray:
        if self.balanced:
            return self.rng.choice(len(self.rows), size=len(self.rows), replace=True, p=self.p)
        return self.rng.permutation(len(self.rows)) if self.shuffle else np.arange(len(self.rows))

    def __iter__(self):
        order = self.order()
        for i in range(len(self)):
            pos = order[i * self.batch_size : (i + 1) * self.batch_size]
            rows = self.rows[pos]
            sort = np.argsort(rows, kind="stable")
            xs = {}
            for name, arr in self.arrays.items():
                gathered = np.empty((len(rows),) + arr.shape[1:], dtype=arr.dtype)
                gathered[sort] = arr[rows[sort]]
                xs[name] = torch.from_numpy(gathered).pin_memory() if self.pin_memory else torch.from_numpy(gathered)
            present = None if self.present is None else {s: torch.from_numpy(m[pos]) for s, m in self.present.items()}
            meta = None if self.meta is None else {c: torch.from_numpy(v[pos]) for c, v in self.meta.items()}
            yield Batch(xs, torch.from_numpy(self.labels[pos].astype(np.int64)), present, meta)

"""The packed store every dataset kind is turned into, and that training reads.

A store is a folder::

    index.tsv        one row per sample: row (0..N-1), sample, subject, label, [has_{source}, pool, age, ...]
    sources.json     [{"name", "channels", "size", "dims"}, ...] in source order
    {source}.npy     (N, channels, size, size[, size]) float32 or float16, read with mmap
    meta.json        optional: {"extra": [names], ...}: arrays that are not sources (e.g. the
                     Two-View digits its training views are redrawn from, ``views: redraw``)
    extra_{name}.npy (N, ...) each extra array

so the training loader never re-opens image files (NIfTI, IDX, .mat). ``subject`` is
what splits group by (for MNIST it equals ``sample``); ``label`` is the class used by
the probe and by class-balanced sampling.

Missing sources: a sample is one subject-visit's set of available sources. A store where
some sample lacks a source has a column ``has_{source}`` (0/1) per source; the array rows
of an absent source are zeros and must never be read as data (:meth:`Store.present`).
A store without these columns has every source for every sample. A sample with no source
at all is not a sample (``write_store`` refuses it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.modalities import present_column
from mmssl.io import atomic_dir
from mmssl.types import SourceSpec

INDEX_COLUMNS = ("row", "sample", "subject", "label")


def presence(index: pd.DataFrame, sources: list[str]) -> dict[str, np.ndarray]:
    """source -> (N,) bool: which samples of ``index`` have that source (all True for a
    source without a ``has_`` column)."""
    n = len(index)
    return {s: (index[present_column(s)].to_numpy().astype(bool) if present_column(s) in index.columns
                else np.ones(n, dtype=bool)) for s in sources}


@dataclass
class Store:
    """An opened store. arrays: source -> (N, C, *S) array (memory-mapped); extra: the
    arrays that are not sources, by name; meta: meta.json ({} for a store without one)."""

    path: Path
    index: pd.DataFrame
    sources: list[SourceSpec]
    arrays: dict[str, np.ndarray]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]

    def present(self, source: str) -> np.ndarray:
        """(N,) bool: the samples that have ``source`` (see the module docstring)."""
        return presence(self.index, [source])[source]

    @property
    def complete(self) -> np.ndarray:
        """(N,) bool: the samples that have every source."""
        return np.logical_and.reduce([self.present(s) for s in self.source_names])

    @property
    def has_missing(self) -> bool:
        """Whether some sample lacks some source."""
        return not bool(self.complete.all())


def write_store(path: str | Path, index: pd.DataFrame, arrays: dict[str, np.ndarray], sources: list[SourceSpec],
                extra: dict[str, np.ndarray] | None = None, meta: dict | None = None) -> Path:
    """Write a store atomically (:func:`mmssl.io.atomic_dir`: a temporary sibling folder,
    renamed when complete), so an interrupted job never leaves a folder that looks
    finished. index: one row per sample (sample, subject, label, ...; ``row`` is added);
    arrays: source -> (N, channels, size, size[, size]). extra: other (N, ...) arrays;
    meta: what readers need to know about them (written to meta.json with their names)."""
    path = Path(path)
    missing = [c for c in INDEX_COLUMNS if c != "row" and c not in index.columns]
    if missing:
        raise ValueError(f"store index lacks columns {missing}; has {list(index.columns)}")
    n = len(index)
    for s in sources:
        a = arrays[s.name]
        expected = (n, s.channels) + (s.size,) * s.dims
        if a.shape != expected:
            raise ValueError(f"source {s.name!r}: array shape {a.shape}, expected {expected}")
    index = index.reset_index(drop=True).copy()
    marks = presence(index, [s.name for s in sources])
    empty = ~np.logical_or.reduce(list(marks.values()))
    if empty.any():
        raise ValueError(f"{int(empty.sum())} samples have no source (has_* all 0), e.g. "
                         f"{index.loc[empty, 'sample'].astype(str).tolist()[:5]}: leave them out of the store")
    for name, mark in marks.items():
        if not mark.all() and np.any(arrays[name][~mark]):
            raise ValueError(f"source {name!r}: rows of samples without it (has_{name} = 0) must be zeros")
    if "row" not in index.columns:
        index.insert(0, "row", np.arange(n))
    with atomic_dir(path) as tmp:
        index.to_csv(tmp / "index.tsv", sep="\t", index=False)
        (tmp / "sources.json").write_text(json.dumps([asdict(s) for s in sources], indent=1))
        for s in sources:
            np.save(tmp / f"{s.name}.npy", np.ascontiguousarray(arrays[s.name]))
        for name, array in (extra or {}).items():
            if len(array) != n:
                raise ValueError(f"extra array {name!r} has {len(array)} rows, the index {n}")
            np.save(tmp / f"extra_{name}.npy", np.ascontiguousarray(array))
        if extra or meta:
            (tmp / "meta.json").write_text(json.dumps({**(meta or {}), "extra": sorted(extra or {})}, indent=1))
    return path


def read_store(path: str | Path, mmap: bool = True) -> Store:
    """Open a store; raises FileNotFoundError naming the missing file."""
    path = Path(path)
    for name in ("index.tsv", "sources.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: {path} is not a finished mmssl store")
    index = pd.read_csv(path / "index.tsv", sep="\t", dtype={"sample": str, "subject": str})
    sources = [SourceSpec(**d) for d in json.loads((path / "sources.json").read_text())]
    arrays = {}
    for s in sources:
        f = path / f"{s.name}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (source {s.name!r} of store {path})")
        arrays[s.name] = np.load(f, mmap_mode="r" if mmap else None)
        if len(arrays[s.name]) != len(index):
            raise ValueError(f"{f} has {len(arrays[s.name])} samples but {path / 'index.tsv'} has {len(index)} rows")
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
    extra = {}
    for name in meta.get("extra", []):
        f = path / f"extra_{name}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (listed in {path / 'meta.json'})")
        extra[name] = np.load(f, mmap_mode="r" if mmap else None)
    return Store(path=path, index=index, sources=sources, arrays=arrays, extra=extra, meta=meta)

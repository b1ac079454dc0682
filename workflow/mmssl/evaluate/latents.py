"""The latents file: what ``embed`` writes (:mod:`mmssl.evaluate.embed`) and the probe and
the similarity analysis read (:mod:`mmssl.evaluate.steps`). An .npz read without pickle::

    sources            (S,) str              source names, in store order
    z__<source>        (N, latent) float32   raw latent z of the source; NaN on the rows
                                             whose sample lacks the source (never encoded)
    present__<source>  (N,) bool             the row's sample has the source
    use__<source>      (N,) bool             the rows the probe of the source uses
    use__<a>~<b>       (N,) bool             the rows the similarity of sources a and b uses
                                             (a before b in source order; :func:`pair_name`)
    split              (N,) str              train | val | test | holdout
    label              (N,) int or str       class label
    subject            (N,) str              subject id
    sample             (N,) str              sample id
    status             () str                'ok', or 'diverged' when training did not recover:
                                             then N = 0 and the later steps report "diverged"
    epoch              () int                the model's chosen epoch; absent when unknown

The N rows are the union of the rows any analysis uses, in store order; which rows each
analysis uses (``use__``) is ``embed``'s choice alone (see
:func:`mmssl.evaluate.embed.evaluation_rows`), and the readers take exactly those rows:
``use__<x>`` is always within the rows having every source x names, so a z read through
it is always finite, and a z read around it (NaN) makes the probe and CKA fail loudly.

A file without ``present__`` / ``use__`` keys (written before samples could lack a
source) reads as every source present on, and every analysis using, every row.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from mmssl.io import atomic_path

# mmssl.data.splits.SPLITS, spelled out: importing that module pulls in sklearn, which
# reading a latents file does not need (tests/test_missing_eval.py checks they agree)
SPLITS = ("train", "val", "test", "holdout")
PAIR_SEP = "~"  # the report names a pair of sources "a~b" too


def z_key(source: str) -> str:
    """The file's key of a source's latents: ``z__<source>``."""
    return f"z__{source}"


def present_key(source: str) -> str:
    """The file's key of the rows having a source: ``present__<source>``."""
    return f"present__{source}"


def use_key(name: str) -> str:
    """The file's key of the rows an analysis (a source, or a pair ``a~b``) uses: ``use__<name>``."""
    return f"use__{name}"


def pair_name(a: str, b: str) -> str:
    """The name of the analysis of sources a and b: ``a~b``."""
    return f"{a}{PAIR_SEP}{b}"


def source_pairs(sources: list[str]) -> list[tuple[str, str]]:
    """Every unordered pair of sources, a before b in source order (the similarity's rows)."""
    return list(combinations(sources, 2))


def analyses(sources: list[str]) -> dict[str, tuple[str, ...]]:
    """Analysis name -> the sources it needs: each source (its probe), then each pair (its
    similarity). The keys are the ``use__`` names of the latents file."""
    return {**{s: (s,) for s in sources}, **{pair_name(a, b): (a, b) for a, b in source_pairs(sources)}}


def save_latents(path: str | Path, sources: list[str], z: dict[str, np.ndarray], present: dict[str, np.ndarray],
                 use: dict[str, np.ndarray], columns: dict[str, np.ndarray], status: str, epoch: int | None) -> Path:
    """Write a latents file atomically (format: the module docstring).

    z: source -> (N, latent) float32; present: source -> (N,) bool; use: every name of
    :func:`analyses` -> (N,) bool; columns: split, label, subject, sample -> (N,) arrays
    (unicode or numeric: object arrays would need pickle to be read back).
    """
    path = Path(path)
    names = analyses(sources)
    if set(use) != set(names):
        raise ValueError(f"use masks for {sorted(use)}; expected one per analysis {sorted(names)}")
    extra = {} if epoch is None else {"epoch": np.array(epoch, dtype=np.int64)}
    # through an open file: np.savez would append ".npz" to a temporary name without it
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, sources=np.array(sources), **{z_key(s): z[s] for s in sources},
                 **{present_key(s): np.asarray(present[s], dtype=bool) for s in sources},
                 **{use_key(k): np.asarray(use[k], dtype=bool) for k in names},
                 **columns, status=np.array(status), **extra)
    return path


def load_latents(path: Path) -> dict[str, Any]:
    """Read and validate a latents file. Returns sources (list[str]); z (source -> (N, D)
    float array); present (source -> (N,) bool); use (analysis name -> (N,) bool, see
    :func:`analyses`); split, label, subject ((N,) arrays); sample ((N,) str, None in a file
    written without sample ids)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latents file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except ValueError as err:  # object arrays need pickle, which we refuse for safety
        raise ValueError(f"{path}: cannot read without pickle ({err}); store strings as unicode arrays") from err
    missing = [k for k in ("sources", "split", "label", "subject") if k not in data]
    if missing:
        raise ValueError(f"{path} lacks key(s) {missing}; has {sorted(data)}")
    sources = [str(s) for s in np.atleast_1d(data["sources"])]
    n = len(data["split"])
    z = {}
    for s in sources:
        key = z_key(s)
        if key not in data:
            raise ValueError(f"{path} lists source {s!r} but has no key {key!r}; keys: {sorted(data)}")
        if data[key].ndim != 2 or len(data[key]) != n:
            raise ValueError(f"{path}: {key} has shape {data[key].shape}, expected ({n}, D)")
        z[s] = data[key]
    for key in ("label", "subject"):
        if len(data[key]) != n:
            raise ValueError(f"{path}: {key} has {len(data[key])} entries, split has {n}")
    split = data["split"].astype(str)
    bad = sorted(set(split.tolist()) - set(SPLITS))
    if bad:
        raise ValueError(f"{path}: unknown split name(s) {bad}; expected a subset of {list(SPLITS)}")
    present = {s: masks_of(data, present_key(s), n, path) for s in sources}
    use = {}
    for name, needs in analyses(sources).items():
        use[name] = masks_of(data, use_key(name), n, path)
        lacking = use[name] & ~np.logical_and.reduce([present[s] for s in needs])
        if lacking.any():  # the contract every reader relies on: never a row without the data
            raise ValueError(f"{path}: {use_key(name)} takes {int(lacking.sum())} rows lacking one of {list(needs)}")
    return {"sources": sources, "z": z, "present": present, "use": use, "split": split, "label": data["label"],
            "subject": data["subject"].astype(str), "sample": data["sample"].astype(str) if "sample" in data else None}


def masks_of(data: dict[str, np.ndarray], key: str, n: int, path: Path) -> np.ndarray:
    """(n,) bool mask ``key`` of a latents file's arrays; all True when the file predates it."""
    if key not in data:
        return np.ones(n, dtype=bool)
    mask = np.asarray(data[key])
    if mask.shape != (n,) or mask.dtype != bool:
        raise ValueError(f"{path}: {key} has shape {mask.shape} and dtype {mask.dtype}, expected ({n},) bool")
    return mask


def latents_status(path: Path) -> str:
    """'ok', or 'diverged' for the latents of a run whose training did not recover."""
    with np.load(Path(path), allow_pickle=False) as f:
        return str(f["status"]) if "status" in f.files else "ok"


def latents_epoch(path: Path) -> int | None:
    """The model's chosen epoch as ``embed`` recorded it in the latents, or None."""
    with np.load(Path(path), allow_pickle=False) as f:
        return int(f["epoch"]) if "epoch" in f.files else None


def latents_sources(path: Path) -> list[str]:
    """The source names of a latents file, without reading its arrays."""
    with np.load(Path(path), allow_pickle=False) as f:
        return [str(s) for s in np.atleast_1d(f["sources"])]

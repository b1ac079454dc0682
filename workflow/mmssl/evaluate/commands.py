"""File-in / file-out entry points of the evaluation rules (``mmssl probe``, ``mmssl similarity``).

Latents file (.npz, written by the embedding step)::

    sources   (S,) str            source names, in order
    z__<src>  (N, D) float32      raw latent z of each source
    split     (N,) str            train | val | test | holdout
    label     (N,) int or str     class label
    subject   (N,) str            subject id

Outputs are TSV tables written atomically (tmp file + os.replace), so a crashed job never
leaves a finished-looking file for Snakemake to trust.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test", "holdout")
EVAL_SPLITS = ("test", "holdout")
TASKS = ("multiclass", "binary")
SIMILARITY_KEYS = ("split", "svcca_keep")


def load_latents(path: Path) -> dict[str, Any]:
    """Read and validate a latents .npz. Returns sources (list[str]), z (source -> (N, D)
    float array), split, label, subject ((N,) arrays)."""
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
        key = f"z__{s}"
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
    return {"sources": sources, "z": z, "split": split, "label": data["label"], "subject": data["subject"].astype(str)}


def latents_status(path: Path) -> str:
    """'ok', or 'diverged' for the latents of a run whose training did not recover."""
    with np.load(Path(path), allow_pickle=False) as f:
        return str(f["status"]) if "status" in f.files else "ok"


def diverged_rows(path: Path, out_tsv: Path, rows: Callable[[list[str]], list[dict[str, Any]]]) -> pd.DataFrame:
    """Rows marked 'diverged' with NaN in place of the metrics, so the report shows the
    run as diverged instead of silently dropping it, and the rest of the grid goes on."""
    with np.load(Path(path), allow_pickle=False) as f:
        sources = [str(s) for s in np.atleast_1d(f["sources"])]
    df = pd.DataFrame([{**r, "status": "diverged"} for r in rows(sources)])
    write_tsv_atomic(df, out_tsv)
    return df


def write_tsv_atomic(df: pd.DataFrame, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, out)


def _select_classes(data: dict[str, Any], classes: list[Any] | None, latents: Path) -> np.ndarray:
    """Boolean (N,) mask of the rows whose label is in ``classes`` (all rows if None).
    Labels are compared as strings so ["HC", "AD"] and [3, 8] both work from JSON."""
    if classes is None:
        return np.ones(len(data["label"]), dtype=bool)
    labels = data["label"].astype(str)
    wanted = [str(c) for c in classes]
    absent = [c for c in wanted if c not in set(labels.tolist())]
    if absent:
        raise ValueError(f"{latents}: probe classes {absent} do not occur; labels present: {sorted(set(labels.tolist()))}")
    return np.isin(labels, wanted)


def _first_of_subject(subject: np.ndarray) -> np.ndarray:
    """Boolean (N,) mask of each subject's first row in file order (paper: one pair per subject)."""
    mask = np.zeros(len(subject), dtype=bool)
    mask[np.unique(subject, return_index=True)[1]] = True
    return mask


def _binary_labels(labels: np.ndarray, classes: list[Any] | None, latents: Path) -> np.ndarray:
    """(N,) labels -> 0/1 with 1 = the second of ``classes`` (or of the two sorted labels)."""
    labels = labels.astype(str)
    if classes is None:
        present = sorted(set(labels.tolist()))
        if len(present) != 2:
            raise ValueError(
                f"{latents}: binary probe needs exactly 2 labels, found {present}; set settings 'classes': [negative, positive]"
            )
        classes = present
    if len(classes) != 2:
        raise ValueError(f"binary probe setting 'classes' must list [negative, positive]; got {classes}")
    return (labels == str(classes[1])).astype(int)


def _probe_one_source(
    z: np.ndarray, y: np.ndarray, split: np.ndarray, task: str, settings: dict[str, Any], storage: str | None, source: str
) -> list[dict[str, Any]]:
    """z (N, D), y (N,), split (N,) of one source -> the probe's rows for its eval splits."""
    # heavy imports (torch, sklearn, optuna) only when a probe actually runs: keeps `mmssl --help` fast
    from mmssl.evaluate.probe import LinearProbeSettings, TunedProbeSettings, linear_probe, tuned_logistic_probe

    parts = {s: (z[split == s], y[split == s]) for s in SPLITS if np.any(split == s)}
    for needed in ("train", "val"):
        if needed not in parts:
            raise ValueError(f"source {source!r}: no {needed!r} rows in the latents (splits present: {sorted(parts)})")
    evals = {s: parts[s] for s in EVAL_SPLITS if s in parts}
    if not evals:
        raise ValueError(f"source {source!r}: no eval split ({' or '.join(EVAL_SPLITS)}) in the latents")
    (ztr, ytr), (zva, yva) = parts["train"], parts["val"]
    if task == "multiclass":
        return linear_probe(ztr, ytr, zva, yva, evals, LinearProbeSettings.from_config(settings))
    return tuned_logistic_probe(ztr, ytr, zva, yva, evals, TunedProbeSettings.from_config(settings), storage, study_prefix=source)


def run_probe(latents: Path, out_tsv: Path, settings: dict[str, Any] | None, task: str) -> pd.DataFrame:
    """Probe every source of ``latents``; one row per (source, eval split).

    task: ``multiclass`` (linear_probe; settings = LinearProbeSettings keys) or ``binary``
    (tuned_logistic_probe; settings = TunedProbeSettings keys). Both accept ``classes``:
    the labels to keep (binary: [negative, positive]), and ``one_per_subject`` (default
    False): keep only each subject's first row, as the paper does for OASIS-3. The binary
    Optuna studies live in ``<out_tsv stem>.optuna.db`` beside ``out_tsv``, so a rerun
    resumes them.
    """
    if task not in TASKS:
        raise ValueError(f"probe task must be one of {list(TASKS)}; got {task!r}")
    latents, out_tsv = Path(latents), Path(out_tsv)
    if latents_status(latents) == "diverged":
        metric = "accuracy" if task == "multiclass" else "roc_auc"
        return diverged_rows(latents, out_tsv, lambda srcs: [{"source": s, "split": "test", metric: np.nan} for s in srcs])
    settings = dict(settings or {})
    classes = settings.pop("classes", None)
    one_per_subject = bool(settings.pop("one_per_subject", False))
    data = load_latents(latents)
    keep = _select_classes(data, classes, latents)
    if one_per_subject:
        keep &= _first_of_subject(data["subject"])
    labels = data["label"][keep]
    y = _binary_labels(labels, classes, latents) if task == "binary" else labels
    storage = None
    if task == "binary":
        out_tsv.parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(out_tsv.parent / (out_tsv.stem + '.optuna.db')).resolve()}"
    rows = []
    for source in data["sources"]:
        for row in _probe_one_source(data["z"][source][keep], y, data["split"][keep], task, settings, storage, source):
            rows.append({"source": source, **row, "status": "ok"})
    df = pd.DataFrame(rows)
    write_tsv_atomic(df, out_tsv)
    return df


def run_similarity(latents: Path, out_tsv: Path, settings: dict[str, Any] | None = None) -> pd.DataFrame:
    """CKA and SVCCA for every unordered pair of sources on one split.

    settings: ``split`` (default ``test``), ``svcca_keep`` (variance fraction, default 0.99).
    Rows: source_a, source_b, split, n, cka, svcca. No pairs (one source) -> header only.
    """
    from threadpoolctl import threadpool_limits

    from mmssl.evaluate.similarity import linear_cka, svcca

    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SIMILARITY_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in similarity settings; allowed keys: {list(SIMILARITY_KEYS)}")
    split_name = settings.get("split", "test")
    if latents_status(latents) == "diverged":
        return diverged_rows(latents, out_tsv, lambda srcs: [
            {"source_a": a, "source_b": b, "split": split_name, "cka": np.nan, "svcca": np.nan}
            for a, b in combinations(srcs, 2)])
    keep_var = float(settings.get("svcca_keep", 0.99))
    data = load_latents(Path(latents))
    rows_mask = data["split"] == split_name
    if not rows_mask.any():
        raise ValueError(f"{latents}: no rows in split {split_name!r}; splits present: {sorted(set(data['split'].tolist()))}")
    rows = []
    for a, b in combinations(data["sources"], 2):
        za, zb = data["z"][a][rows_mask], data["z"][b][rows_mask]
        # one BLAS thread: (N, 64) products are tiny, and on a busy node threaded BLAS
        # spin-waits (measured 10000 x 64: 0.25 s on one thread, 3-6 s with two under load)
        with threadpool_limits(limits=1):
            cka, cca = linear_cka(za, zb), svcca(za, zb, keep_var).mean
        rows.append(
            {
                "source_a": a,
                "source_b": b,
                "split": split_name,
                "n": int(rows_mask.sum()),
                "cka": cka,
                "svcca": cca,
                "status": "ok",
            }
        )
    df = pd.DataFrame(rows, columns=["source_a", "source_b", "split", "n", "cka", "svcca", "status"])
    write_tsv_atomic(df, Path(out_tsv))
    return df


def _settings_arg(value: str) -> dict[str, Any]:
    """--settings-json: inline JSON object, or the path of a .json file holding one."""
    text = Path(value).read_text() if value and not value.lstrip().startswith("{") and Path(value).is_file() else value
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--settings-json is neither a JSON object nor a JSON file: {err}") from err
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"--settings-json must be a JSON object; got {type(parsed).__name__}")
    return parsed


def _probe_cmd(args: argparse.Namespace) -> None:
    run_probe(args.latents, args.out, args.settings_json, args.task)


def _similarity_cmd(args: argparse.Namespace) -> None:
    run_similarity(args.latents, args.out, args.settings_json)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``probe`` and ``similarity`` sub-commands (``args.func(args)`` runs one)."""
    p = sub.add_parser("probe", help="linear / tuned logistic probe of frozen latents -> TSV")
    p.add_argument("--latents", type=Path, required=True, help="latents .npz (z__<source>, sources, split, label, subject)")
    p.add_argument("--out", type=Path, required=True, help="output TSV; binary task also writes <stem>.optuna.db beside it")
    p.add_argument("--task", choices=TASKS, required=True, help="multiclass (linear layer) or binary (Optuna-tuned logistic)")
    p.add_argument("--settings-json", type=_settings_arg, default={}, help="probe settings: JSON object or .json file")
    p.set_defaults(func=_probe_cmd)
    s = sub.add_parser("similarity", help="CKA and SVCCA between every pair of sources -> TSV")
    s.add_argument("--latents", type=Path, required=True, help="latents .npz")
    s.add_argument("--out", type=Path, required=True, help="output TSV")
    s.add_argument("--settings-json", type=_settings_arg, default={}, help='e.g. {"split": "test", "svcca_keep": 0.99}')
    s.set_defaults(func=_similarity_cmd)

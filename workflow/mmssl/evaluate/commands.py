"""The evaluation stage's sub-commands (``mmssl embed``, ``mmssl probe``, ``mmssl
similarity``) and their file-in / file-out entry points.

Latents file (.npz, written by ``embed``; see :mod:`mmssl.evaluate.embed`)::

    sources   (S,) str            source names, in order
    z__<src>  (N, D) float32      raw latent z of each source
    split     (N,) str            train | val | test | holdout
    label     (N,) int or str     class label
    subject   (N,) str            subject id
    status    () str              'ok' or 'diverged' (then N = 0)
    epoch     () int              the model's chosen epoch (optional; absent when unknown)

The probe and the similarity analysis use every row they are given: which samples of a
subject take part (one pair per subject for brain MRI) is ``embed``'s choice alone.
Every output row carries the latents' ``epoch`` (empty when unknown), so the report can
say which checkpoint a number comes from. Outputs are TSV tables written atomically (:mod:`mmssl.io`), so a crashed job never
leaves a finished-looking file for Snakemake to trust.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmssl.io import write_tsv
from mmssl.settings import settings_arg

SPLITS = ("train", "val", "test", "holdout")
EVAL_SPLITS = ("test", "holdout")
TASKS = ("multiclass", "binary")
SIMILARITY_COLUMNS = ["source_a", "source_b", "split", "n", "epoch", "cka", "svcca", "svcca_kept_a", "svcca_kept_b",
                      "note", "status"]


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


def latents_epoch(path: Path) -> int | None:
    """The model's chosen epoch as ``embed`` recorded it in the latents, or None."""
    with np.load(Path(path), allow_pickle=False) as f:
        return int(f["epoch"]) if "epoch" in f.files else None


def diverged_rows(path: Path, out_tsv: Path, rows: Callable[[list[str]], list[dict[str, Any]]]) -> pd.DataFrame:
    """Rows marked 'diverged' with NaN in place of the metrics, so the report shows the
    run as diverged instead of silently dropping it, and the rest of the grid goes on."""
    with np.load(Path(path), allow_pickle=False) as f:
        sources = [str(s) for s in np.atleast_1d(f["sources"])]
    epoch = latents_epoch(path)
    df = pd.DataFrame([{**r, "epoch": epoch, "status": "diverged"} for r in rows(sources)])
    write_tsv(df, out_tsv)
    return df


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
    the labels to keep (binary: [negative, positive]; missing or null: all). The binary
    Optuna studies live in ``<out_tsv stem>.optuna.db`` beside ``out_tsv`` while the job
    runs, so a rerun of an interrupted job resumes them; the file is removed once the table
    is written (resume state, not a declared output: Snakemake deletes a failed job's
    outputs, which would leave nothing to resume from).

    Rows: source, split, the probe's metrics, n (eval rows), ci_low / ci_high (95%
    bootstrap interval of accuracy or ROC AUC), its settings, epoch, status.
    """
    if task not in TASKS:
        raise ValueError(f"probe task must be one of {list(TASKS)}; got {task!r}")
    latents, out_tsv = Path(latents), Path(out_tsv)
    if latents_status(latents) == "diverged":
        metric = "accuracy" if task == "multiclass" else "roc_auc"
        return diverged_rows(latents, out_tsv, lambda srcs: [{"source": s, "split": "test", metric: np.nan} for s in srcs])
    settings = dict(settings or {})
    classes = settings.pop("classes", None)  # probe.classes: null (all labels) in the schema
    data = load_latents(latents)
    keep = _select_classes(data, classes, latents)
    labels = data["label"][keep]
    y = _binary_labels(labels, classes, latents) if task == "binary" else labels
    storage, study = None, out_tsv.parent / (out_tsv.stem + ".optuna.db")
    if task == "binary":
        out_tsv.parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{study.resolve()}"
    epoch = latents_epoch(latents)
    rows = []
    for source in data["sources"]:
        for row in _probe_one_source(data["z"][source][keep], y, data["split"][keep], task, settings, storage, source):
            rows.append({"source": source, **row, "epoch": epoch, "status": "ok"})
    df = pd.DataFrame(rows)
    write_tsv(df, out_tsv)
    study.unlink(missing_ok=True)
    return df


def run_similarity(latents: Path, out_tsv: Path, settings: dict[str, Any] | None = None) -> pd.DataFrame:
    """CKA and SVCCA for every unordered pair of sources on one split.

    settings: the ``similarity`` section (:class:`mmssl.evaluate.similarity.SimilaritySettings`:
    ``split``, ``svcca_keep``; keys left out take the schema's defaults).
    Rows: source_a, source_b, split, n, epoch, cka, svcca, svcca_kept_a, svcca_kept_b
    (dimensions SVCCA kept of each), note, status. No pairs (one source) -> header only.
    SVCCA is NaN, and ``note`` says why, unless n >= 5 x the larger kept dimension
    (:func:`mmssl.evaluate.similarity.svcca_shortfall`); CKA is always reported.
    """
    from threadpoolctl import threadpool_limits

    from mmssl.evaluate.similarity import SimilaritySettings, linear_cka, svcca, svcca_shortfall

    s = SimilaritySettings.from_config(settings)
    split_name = s.split
    if latents_status(latents) == "diverged":
        return diverged_rows(latents, out_tsv, lambda srcs: [
            {"source_a": a, "source_b": b, "split": split_name, "cka": np.nan, "svcca": np.nan}
            for a, b in combinations(srcs, 2)])
    keep_var = float(s.svcca_keep)
    data = load_latents(Path(latents))
    rows_mask = data["split"] == split_name
    if not rows_mask.any():
        raise ValueError(f"{latents}: no rows in split {split_name!r}; splits present: {sorted(set(data['split'].tolist()))}")
    epoch, n = latents_epoch(latents), int(rows_mask.sum())
    rows = []
    for a, b in combinations(data["sources"], 2):
        za, zb = data["z"][a][rows_mask], data["z"][b][rows_mask]
        # one BLAS thread: (N, 64) products are tiny, and on a busy node threaded BLAS
        # spin-waits (measured 10000 x 64: 0.25 s on one thread, 3-6 s with two under load)
        with threadpool_limits(limits=1):
            cka, cca = linear_cka(za, zb), svcca(za, zb, keep_var)
        note = svcca_shortfall(n, cca)
        rows.append(
            {
                "source_a": a,
                "source_b": b,
                "split": split_name,
                "n": n,
                "epoch": epoch,
                "cka": cka,
                "svcca": np.nan if note else cca.mean,
                "svcca_kept_a": cca.kept_x,
                "svcca_kept_b": cca.kept_y,
                "note": note or "",
                "status": "ok",
            }
        )
    df = pd.DataFrame(rows, columns=SIMILARITY_COLUMNS)
    write_tsv(df, out_tsv)
    return df


def _embed_cmd(args: argparse.Namespace) -> None:
    from mmssl.evaluate.embed import embed  # torch and the model code: only when embedding

    embed(args.store, args.split, args.model, args.out, one_per_subject=args.one_per_subject, device=args.device)


def _probe_cmd(args: argparse.Namespace) -> None:
    run_probe(args.latents, args.out, args.settings_json, args.task)


def _similarity_cmd(args: argparse.Namespace) -> None:
    run_similarity(args.latents, args.out, args.settings_json)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``embed``, ``probe`` and ``similarity`` sub-commands (``args.func(args)`` runs one)."""
    e = sub.add_parser("embed", help="latents z of the frozen encoders for the evaluation splits -> .npz")
    e.add_argument("--store", type=Path, required=True, help="the packed store the model was trained on")
    e.add_argument("--split", type=Path, required=True, help="the fold's split table (results/{dataset}/splits/fold{k}.tsv)")
    e.add_argument("--model", type=Path, required=True, help="model.pt written by `mmssl train`")
    e.add_argument("--out", type=Path, required=True, help="output latents .npz")
    e.add_argument("--one-per-subject", action="store_true",
                   help="keep each subject's first sample only (the paper's protocol for brain MRI)")
    e.add_argument("--device", default="auto", help="auto (CUDA when usable), cpu, cuda or cuda:N")
    e.set_defaults(func=_embed_cmd)
    p = sub.add_parser("probe", help="linear / tuned logistic probe of frozen latents -> TSV")
    p.add_argument("--latents", type=Path, required=True, help="latents .npz (z__<source>, sources, split, label, subject)")
    p.add_argument("--out", type=Path, required=True, help="output TSV; binary task also writes <stem>.optuna.db beside it")
    p.add_argument("--task", choices=TASKS, required=True, help="multiclass (linear layer) or binary (Optuna-tuned logistic)")
    p.add_argument("--settings-json", type=settings_arg,
                   help="the task's probe settings plus classes: JSON object or .json file (left-out keys: schema defaults)")
    p.set_defaults(func=_probe_cmd)
    s = sub.add_parser("similarity", help="CKA and SVCCA between every pair of sources -> TSV")
    s.add_argument("--latents", type=Path, required=True, help="latents .npz")
    s.add_argument("--out", type=Path, required=True, help="output TSV")
    s.add_argument("--settings-json", type=settings_arg,
                   help='the similarity section, e.g. {"split": "test", "svcca_keep": 0.99} (left-out keys: schema defaults)')
    s.set_defaults(func=_similarity_cmd)

"""File-in/file-out entry points of the ``probe`` and ``similarity`` sub-commands
(:mod:`mmssl.evaluate.commands`): a latents file in, a TSV table out.

The latents file (:mod:`mmssl.evaluate.latents`, written by ``embed``) marks the rows
each analysis uses: the probe of a source takes exactly its ``use__<source>`` rows and
the similarity of a pair exactly its ``use__<a>~<b>`` rows (which samples of a subject
take part, and that a sample lacking a source takes no part in its analyses, is
``embed``'s choice alone). Every output row carries its ``n`` and the latents' ``epoch``
(empty when unknown), so the report can say on how many samples and from which
checkpoint a number comes.

A source too few samples have in a fold for its probe to be computed (an empty split,
one class in train; :func:`mmssl.evaluate.probe.probe_shortfalls`) gives its rows NaN
metrics and a ``note`` "<metric> n/a: <source>: <reason>"; a pair with fewer than 2
samples having both gives NaN CKA and SVCCA and a ``note`` "cka n/a: ...". Their status
stays 'ok' (the run finished; 'diverged' is for a run whose training did not recover).
Outputs are TSV tables written atomically (:mod:`mmssl.io`), so a crashed job never
leaves a finished-looking file for Snakemake to trust.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmssl.evaluate.latents import latents_epoch, latents_sources, latents_status, load_latents, pair_name, source_pairs
from mmssl.io import write_tsv

EVAL_SPLITS = ("test", "holdout")
TASKS = ("multiclass", "binary")
# the probe's headline metric per task: the one its n/a note names
HEADLINE_METRIC = {"multiclass": "accuracy", "binary": "roc_auc"}
SIMILARITY_COLUMNS = ["source_a", "source_b", "split", "n", "epoch", "cka", "svcca", "svcca_kept_a", "svcca_kept_b",
                      "note", "status"]
# CKA and SVCCA need at least this many samples having both sources (column-centred data)
MIN_SIMILARITY_SAMPLES = 2


def diverged_rows(path: Path, out_tsv: Path, rows: Callable[[list[str]], list[dict[str, Any]]]) -> pd.DataFrame:
    """Rows marked 'diverged' with NaN in place of the metrics, so the report shows the
    run as diverged instead of silently dropping it, and the rest of the grid goes on."""
    epoch = latents_epoch(path)
    df = pd.DataFrame([{**r, "epoch": epoch, "status": "diverged"} for r in rows(latents_sources(path))])
    write_tsv(df, out_tsv)
    return df


# how a subject without a label reaches the latents (participants.tsv without a label column)
UNLABELLED = ("", "nan", "None", "n/a")


def _unlabelled_rows(latents: Path, out_tsv: Path, data: dict[str, Any], task: str) -> pd.DataFrame:
    """A dataset without labels (pretraining needs none): one row per source saying so, the
    metric n/a, rather than a failed job."""
    note = ("no label: the dataset has none (set discover.participants.label_column, or clinical_csv); "
            "pretraining and similarity need none")
    rows = [{"source": source, "split": "test", HEADLINE_METRIC[task]: np.nan, "n": 0, "note": note,
             "epoch": latents_epoch(latents), "status": "ok"} for source in data["sources"]]
    df = pd.DataFrame(rows)
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


def _probe_one_source(z: np.ndarray, y: np.ndarray, split: np.ndarray, evals: tuple[str, ...], task: str,
                      settings: dict[str, Any], storage: str | None, source: str) -> list[dict[str, Any]]:
    """The probe of one source on its rows: z (N, D), y (N,), split (N,) -> one row per
    eval split in ``evals`` (the probe's keys, plus ``note``). A split the probe cannot
    score (:func:`mmssl.evaluate.probe.probe_shortfalls`) gets NaN metrics, its n, and a
    note saying why; the others are scored as usual."""
    # heavy imports (torch, sklearn, optuna) only when a probe actually runs: keeps `mmssl --help` fast
    from mmssl.evaluate.probe import (LINEAR_PROBE_KEYS, TUNED_PROBE_KEYS, LinearProbeSettings, TunedProbeSettings,
                                      linear_probe, probe_shortfalls, tuned_logistic_probe)

    parts = {s: (z[split == s], y[split == s]) for s in ("train", "val", *evals)}
    gaps = probe_shortfalls(parts["train"][1], parts["val"][1], {s: parts[s][1] for s in evals}, task == "binary")
    scored = {s: parts[s] for s in evals if s not in gaps}
    rows = {}
    if scored:
        (ztr, ytr), (zva, yva) = parts["train"], parts["val"]
        if task == "multiclass":
            found = linear_probe(ztr, ytr, zva, yva, scored, LinearProbeSettings.from_config(settings))
        else:
            found = tuned_logistic_probe(ztr, ytr, zva, yva, scored, TunedProbeSettings.from_config(settings), storage,
                                         study_prefix=source)
        rows = {r["split"]: {**r, "note": ""} for r in found}
    keys = LINEAR_PROBE_KEYS if task == "multiclass" else TUNED_PROBE_KEYS
    for s, why in gaps.items():
        rows[s] = {**{k: np.nan for k in keys}, "split": s, "n": len(parts[s][1]),
                   "note": f"{HEADLINE_METRIC[task]} n/a: {source}: {why}"}
    return [rows[s] for s in evals]


def run_probe(latents: Path, out_tsv: Path, settings: dict[str, Any] | None, task: str) -> pd.DataFrame:
    """Probe every source of ``latents`` on its own rows (``use__<source>``); one row per
    (source, eval split).

    task: ``multiclass`` (linear_probe; settings = LinearProbeSettings keys) or ``binary``
    (tuned_logistic_probe; settings = TunedProbeSettings keys). Both accept ``classes``:
    the labels to keep (binary: [negative, positive]; missing or null: all). The binary
    Optuna studies live in ``<out_tsv stem>.optuna.db`` beside ``out_tsv`` while the job
    runs, so a rerun of an interrupted job resumes them; the file is removed once the table
    is written (resume state, not a declared output: Snakemake deletes a failed job's
    outputs, which would leave nothing to resume from).

    The eval splits are those of the latents (test, and holdout when it has one), the same
    for every source. Rows: source, split, the probe's metrics, n (the source's eval rows),
    ci_low / ci_high (95% bootstrap interval of accuracy or ROC AUC), its settings, note
    (why a source's split is n/a, see the module docstring; else empty), epoch, status.
    """
    if task not in TASKS:
        raise ValueError(f"probe task must be one of {list(TASKS)}; got {task!r}")
    latents, out_tsv = Path(latents), Path(out_tsv)
    if latents_status(latents) == "diverged":
        metric = HEADLINE_METRIC[task]
        return diverged_rows(latents, out_tsv, lambda srcs: [{"source": s, "split": "test", metric: np.nan} for s in srcs])
    settings = dict(settings or {})
    classes = settings.pop("classes", None)  # probe.classes: null (all labels) in the schema
    data = load_latents(latents)
    if not np.isin(data["label"].astype(str), list(UNLABELLED), invert=True).any():
        return _unlabelled_rows(latents, out_tsv, data, task)
    keep = _select_classes(data, classes, latents)
    labels = data["label"][keep]
    y = _binary_labels(labels, classes, latents) if task == "binary" else labels
    split = data["split"][keep]
    for needed in ("train", "val"):  # a split table without them is broken, whatever the sources
        if not np.any(split == needed):
            raise ValueError(f"{latents}: no {needed!r} rows in the latents (splits present: {sorted(set(split.tolist()))})")
    evals = tuple(s for s in EVAL_SPLITS if np.any(split == s))
    if not evals:
        raise ValueError(f"{latents}: no eval split ({' or '.join(EVAL_SPLITS)}) in the latents")
    storage, study = None, out_tsv.parent / (out_tsv.stem + ".optuna.db")
    if task == "binary":
        out_tsv.parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{study.resolve()}"
    epoch = latents_epoch(latents)
    rows = []
    for source in data["sources"]:
        mine = data["use"][source][keep]
        for row in _probe_one_source(data["z"][source][keep][mine], y[mine], split[mine], evals, task, settings, storage,
                                     source):
            rows.append({"source": source, **row, "epoch": epoch, "status": "ok"})
    df = pd.DataFrame(rows)
    write_tsv(df, out_tsv)
    study.unlink(missing_ok=True)
    return df


def run_similarity(latents: Path, out_tsv: Path, settings: dict[str, Any] | None = None) -> pd.DataFrame:
    """CKA and SVCCA for every unordered pair of sources on one split, each pair on its own
    rows (``use__<a>~<b>``: samples having both).

    settings: the ``similarity`` section (:class:`mmssl.evaluate.similarity.SimilaritySettings`:
    ``split``, ``svcca_keep``; keys left out take the schema's defaults).
    Rows: source_a, source_b, split, n (the pair's rows in the split), epoch, cka, svcca,
    svcca_kept_a, svcca_kept_b (dimensions SVCCA kept of each), note, status. No pairs (one
    source) -> header only. SVCCA is NaN, and ``note`` says why, unless n >= 5 x the
    larger kept dimension (:func:`mmssl.evaluate.similarity.svcca_shortfall`); CKA is
    reported whenever n >= MIN_SIMILARITY_SAMPLES, else both are NaN with a note.
    """
    from threadpoolctl import threadpool_limits

    from mmssl.evaluate.similarity import SimilaritySettings, linear_cka, svcca, svcca_shortfall

    s = SimilaritySettings.from_config(settings)
    split_name = s.split
    if latents_status(latents) == "diverged":
        return diverged_rows(latents, out_tsv, lambda srcs: [
            {"source_a": a, "source_b": b, "split": split_name, "cka": np.nan, "svcca": np.nan}
            for a, b in source_pairs(srcs)])
    keep_var = float(s.svcca_keep)
    data = load_latents(Path(latents))
    in_split = data["split"] == split_name
    if not in_split.any():
        raise ValueError(f"{latents}: no rows in split {split_name!r}; splits present: {sorted(set(data['split'].tolist()))}")
    epoch = latents_epoch(latents)
    rows = []
    for a, b in source_pairs(data["sources"]):
        mine = in_split & data["use"][pair_name(a, b)]
        n = int(mine.sum())
        row = {"source_a": a, "source_b": b, "split": split_name, "n": n, "epoch": epoch, "status": "ok"}
        if n < MIN_SIMILARITY_SAMPLES:
            rows.append({**row, "cka": np.nan, "svcca": np.nan, "svcca_kept_a": pd.NA, "svcca_kept_b": pd.NA,
                         "note": f"cka n/a: {n} {split_name} samples have both {a} and {b} "
                                 f"(need {MIN_SIMILARITY_SAMPLES})"})
            continue
        za, zb = data["z"][a][mine], data["z"][b][mine]
        # one BLAS thread: (N, 64) products are tiny, and on a busy node threaded BLAS
        # spin-waits (measured 10000 x 64: 0.25 s on one thread, 3-6 s with two under load)
        with threadpool_limits(limits=1):
            cka, cca = linear_cka(za, zb), svcca(za, zb, keep_var)
        note = svcca_shortfall(n, cca)
        rows.append({**row, "cka": cka, "svcca": np.nan if note else cca.mean, "svcca_kept_a": cca.kept_x,
                     "svcca_kept_b": cca.kept_y, "note": note or ""})
    # nullable integers: a pair without enough samples leaves its kept dims empty, not 3.0
    df = pd.DataFrame(rows, columns=SIMILARITY_COLUMNS).astype({"svcca_kept_a": "Int64", "svcca_kept_b": "Int64"})
    write_tsv(df, out_tsv)
    return df

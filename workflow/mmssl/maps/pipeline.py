"""File-in/file-out entry point of the ``maps`` and ``maps_links`` rules: the maps of one
source of one (method, fold), with a JSON sidecar each.

Rows. The latents file (:mod:`mmssl.evaluate.latents`) says which samples each analysis
uses; the maps take the same ones, so they explain the representation the probe scores:
the decision is the probe's, refit on the ``use__<source>`` rows of the train split with
the (C, l1_ratio) the probe chose (its table names them), the attribution is of its
``use__<source>`` test rows, and the links of source a with b use the ``use__<a>~<b>``
test rows (samples having both). A subject counts once (its first such
row); rows whose label is not one of ``classes`` are left out of the decision and the
attribution. A sample lacking a source is never read: only rows the latents mark as
having it are taken from the store (its array rows there are zeros, not data). Before
attributing, each test volume's logit through the encoder is checked against the logit
of its z in the latents file, which catches a store row read for the wrong sample, and
the decision's test ROC AUC against the probe table's, which catches a decision that is
not the probe's.

Attribution map (``{source}_desc-attribution_map.nii.gz``): the mean Integrated-Gradients
attribution of the AD (``classes[1]``) test subjects minus that of the HC (``classes[0]``)
test subjects (:mod:`mmssl.maps.attribution`). With the zero baseline, a subject's
attribution also holds what every brain has (the anatomy of the z-normalised template,
which any encoder responds to); the group difference cancels it and keeps where the
decision treats AD and HC brains differently. Positive: voxels that push AD subjects
towards AD more than HC subjects.

Permutation null (``maps.null_test``): the subjects' labels (fit and test rows pooled, one
per subject) are permuted N times (seeded), the decision is refit on each permuted fit
labels with the same (C, l1_ratio), and the AD-minus-HC map is recomputed with the permuted
test groups; all N + 1 maps come from one pass (:func:`mmssl.maps.attribution.contrast_maps`).
The statistic is max |map| in the brain: the family-wise threshold is the null maxima's
(1 - alpha) point in the permutation sense (:func:`fwe_threshold`), a voxel above it is
significant, and the peak's p is (1 + #{null max >= |peak|}) / (N + 1). The sidecar's
``null`` holds them. C and l1_ratio are not retuned per permutation (the probe's study is
too costly to repeat N times), so a strongly regularised choice can zero every permuted
decision (``null_zero_decisions``), which makes every non-zero voxel significant.

A map that cannot be made (a diverged run; a class without subjects in train or test; a
source the probe could not score) is written as NaN everywhere, and its sidecar and figure
say why, so the rest of the grid goes on.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmssl.data.store import read_store
from mmssl.device import select_device
from mmssl.evaluate.embed import first_per_subject
from mmssl.evaluate.latents import latents_status, load_latents, pair_name, source_pairs
from mmssl.evaluate.probe import TunedProbeSettings, refit_tuned
from mmssl.io import write_json
from mmssl.maps.attribution import ContrastMaps, Decision, contrast_maps, fold_decision
from mmssl.maps.figures import plot_map
from mmssl.maps.links import critic_scores, latent_embedding, local_embeddings, upsample_locations
from mmssl.maps.settings import MapsSettings, NullSettings
from mmssl.maps.volumes import brain_support, json_ready, map_grid, save_map, sidecar_path
from mmssl.models.encoders import LOCAL_SIDE
from mmssl.objectives.model_file import load_model
from mmssl.progress import Progress
from mmssl.preprocess.spatial import Grid

log = logging.getLogger(__name__)

FIT_SPLITS = ("train",)  # where the probe refits its chosen (C, l1_ratio)
MAP_SPLIT = "test"
# a logit recomputed from the store may differ from the latents' by float noise (another
# batch composition, TF32 convolutions on a GPU), never by more than this share
LOGIT_TOLERANCE = 0.02


class NoMap(Exception):
    """A map that cannot be made for a reason of the data (written as NaN, not a failure)."""


def store_rows(samples: np.ndarray, index_samples: np.ndarray) -> np.ndarray:
    """(n,) store rows of the latents' ``samples`` (the store's ``sample`` column)."""
    lookup = {s: i for i, s in enumerate(index_samples.astype(str))}
    missing = [s for s in samples.astype(str) if s not in lookup]
    if missing:
        raise ValueError(f"{len(missing)} samples of the latents are not in the store, e.g. {missing[:3]}: the "
                         "latents were made from another store")
    return np.array([lookup[s] for s in samples.astype(str)], dtype=np.int64)


def chosen_rows(data: dict[str, Any], use: np.ndarray, splits: tuple[str, ...], keep: np.ndarray) -> np.ndarray:
    """(R,) latents rows: ``use`` rows in ``splits`` among ``keep``, one per subject (its first)."""
    mask = use & np.isin(data["split"], splits) & keep
    return np.flatnonzero(first_per_subject(data["subject"], mask))


def read_volumes(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(R, C, *S) float32 volumes of store ``rows`` (sorted reads of a memory map, back in order)."""
    order = np.argsort(rows)
    out = np.empty((len(rows), *array.shape[1:]), np.float32)
    out[order] = np.asarray(array[rows[order]], dtype=np.float32)
    return out


def probe_choice(probe_tsv: str | Path, source: str) -> dict[str, float]:
    """The probe's choice for ``source`` from its table (``mmssl probe``, binary task): C,
    l1_ratio and the test ROC AUC of the refit decision. NoMap when the probe could not
    score the source (its note says why)."""
    import pandas as pd

    table = pd.read_csv(probe_tsv, sep="\t")
    missing = {"source", "split", "roc_auc", "C", "l1_ratio"} - set(table.columns)
    if missing:
        raise ValueError(f"{probe_tsv}: not a binary probe table (no columns {sorted(missing)})")
    rows = table[(table["source"].astype(str) == source) & (table["split"] == MAP_SPLIT)]
    if len(rows) != 1:
        raise ValueError(f"{probe_tsv}: expected one {MAP_SPLIT} row of {source}, found {len(rows)}")
    row = rows.iloc[0]
    if not np.isfinite([row["C"], row["l1_ratio"], row["roc_auc"]]).all():
        note = row.get("note")
        raise NoMap(f"{source}: the probe has no decision ({note if isinstance(note, str) and note else 'no C / l1_ratio'})")
    return {"C": float(row["C"]), "l1_ratio": float(row["l1_ratio"]), "roc_auc": float(row["roc_auc"])}


def permuted_labels(fit: np.ndarray, test: np.ndarray, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` permutations of the subjects' labels, train and test pooled (each row is one
    subject): [(fit labels, test labels)], each with both classes in both splits (a draw
    without is drawn again). Seeded: the same seed gives the same permutations."""
    pooled = np.concatenate([fit, test]).astype(bool)
    rng = np.random.default_rng(seed)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(100 * n + 100):
        if len(out) == n:
            break
        drawn = rng.permutation(pooled)
        f, t = drawn[:len(fit)], drawn[len(fit):]
        if 0 < f.sum() < len(f) and 0 < t.sum() < len(t):
            out.append((f, t))
    if len(out) < n:
        raise NoMap(f"permuted labels keep leaving a class without subjects in train or test ({len(fit)} / {len(test)})")
    return out


def group_coefficients(positive: np.ndarray) -> np.ndarray:
    """(n,) weights making sum_i c_i a_i the positive group's mean minus the negative's."""
    positive = np.asarray(positive, bool)
    return np.where(positive, 1.0 / max(int(positive.sum()), 1), -1.0 / max(int((~positive).sum()), 1))


def fwe_threshold(null_max: np.ndarray, alpha: float) -> float:
    """The family-wise threshold of the max statistic: |value| above it has permutation
    p = (1 + #{null max >= |value|}) / (N + 1) <= alpha, i.e. at most k = floor(alpha (N +
    1)) - 1 null maxima reach it; the threshold is the (k + 1)-th largest null maximum (for
    N = 39 and alpha = 0.05 the second largest, the empirical 95th percentile of the N + 1
    maxima). inf when N is too small for alpha (nothing can be significant)."""
    k = int(np.floor(alpha * (len(null_max) + 1) + 1e-9)) - 1
    if k < 0 or len(null_max) == 0:
        return float("inf")
    return float(np.sort(np.asarray(null_max, np.float64))[::-1][k])


def permutation_p(value: float, null_max: np.ndarray) -> float:
    """(1 + #{null max >= |value|}) / (N + 1)."""
    return float((1 + int(np.sum(np.asarray(null_max) >= abs(value)))) / (len(null_max) + 1))


@dataclass
class AttributionResult:
    """The observed map (*S), its sidecar facts, and what the benchmark reads: the null maps
    (N, *S), the brain (*S) bool, the test labels (n,) bool and, when asked for, every test
    subject's attribution (n, *S) under the observed decision."""

    volume: np.ndarray
    info: dict[str, Any]
    null_maps: np.ndarray
    brain: np.ndarray
    positive: np.ndarray
    subjects: np.ndarray | None = None


def attribution_map(model: torch.nn.Module, store: Any, data: dict[str, Any], source: str, classes: list[str],
                    settings: MapsSettings, device: torch.device, choice: dict[str, float],
                    probe_settings: TunedProbeSettings, keep_subjects: bool = False) -> AttributionResult:
    """AD-minus-HC mean attribution of ``source`` under the probe's decision (``choice``:
    :func:`probe_choice`; ``probe_settings``: the probe's, for saga's seed and iterations),
    its permutation null (``settings.null_test``) and sidecar facts; NoMap when a class
    lacks subjects."""
    labels = data["label"].astype(str)
    keep = np.isin(labels, classes)
    positive = labels == classes[1]
    use = data["use"][source]
    fit = chosen_rows(data, use, FIT_SPLITS, keep)
    test = chosen_rows(data, use, (MAP_SPLIT,), keep)
    for name, rows in (("+".join(FIT_SPLITS), fit), (MAP_SPLIT, test)):
        counts = {c: int(np.sum(labels[rows] == c)) for c in classes}
        if min(counts.values()) < 1:
            raise NoMap(f"{source}: {name} subjects with the source per class {counts}; the map needs both classes")
    z_fit = data["z"][source][fit]
    rows = store_rows(data["sample"][test], store.index["sample"].to_numpy())
    if not store.present(source)[rows].all():  # the latents' contract; never attribute zeros
        raise ValueError(f"{source}: the latents mark test rows the store says lack the source")
    volumes = read_volumes(store.arrays[source], rows)
    result, decision, acc = decision_maps(model.encoders[source], z_fit, positive[fit], volumes, positive[test],
                                          choice["C"], choice["l1_ratio"], probe_settings, settings, device,
                                          keep_subjects)
    expected = decision.logits(data["z"][source][test])
    gap = float(np.max(np.abs(acc.logits - expected)))
    if gap > LOGIT_TOLERANCE * (1.0 + float(np.max(np.abs(expected)))):
        raise ValueError(f"{source}: logits through the encoder differ from those of the latents' z by up to "
                         f"{gap:.3g}: the store rows, the model and the latents do not belong together")
    from sklearn.metrics import roc_auc_score

    test_auc = float(roc_auc_score(positive[test], expected))
    if abs(test_auc - choice["roc_auc"]) > 1e-6:  # not the probe's decision, or not its rows: a bug, never a map
        raise ValueError(f"{source}: the decision's test ROC AUC {test_auc:.6f} is not the probe's {choice['roc_auc']:.6f}: "
                         "the probe table, the latents and the probe settings do not belong together")
    result.info = {"n_fit": len(fit), "n_negative": int(np.sum(~positive[test])),
                   "n_positive": int(np.sum(positive[test])), "C": choice["C"], "l1_ratio": choice["l1_ratio"],
                   "fit_roc_auc": decision.fit_auc, "test_roc_auc": test_auc,
                   "ig_completeness_error": acc.completeness_error(), "logit_check_max_abs_diff": gap,
                   "null": result.info["null"]}
    return result


def decision_maps(encoder: torch.nn.Module, z_fit: np.ndarray, fit_positive: np.ndarray, volumes: np.ndarray,
                  test_positive: np.ndarray, C: float, l1_ratio: float, probe_settings: TunedProbeSettings,
                  settings: MapsSettings, device: torch.device,
                  keep_subjects: bool = False) -> tuple[AttributionResult, Decision, ContrastMaps]:
    """The decision refit on (z_fit (m, D), fit_positive (m,) bool) with (C, l1_ratio), its
    AD-minus-HC map over the test ``volumes`` (n, C, *S) grouped by ``test_positive`` (n,)
    bool, and its permutation null (``settings.null_test``): the labels of the m + n
    subjects permuted, the decision refit with the same (C, l1_ratio), the map recomputed,
    all in one pass of :func:`contrast_maps`. Returns the result (info: only ``null``),
    the observed decision and the raw maps (for the pipeline's checks)."""
    scaler, linear = refit_tuned(z_fit, fit_positive.astype(int), C, l1_ratio, probe_settings)
    decision = fold_decision(scaler, linear, z_fit, fit_positive)
    null = settings.null_settings
    permuted = permuted_labels(fit_positive, test_positive, null.permutations, null.seed)
    weights, coefficients, null_weights = [decision.weight], [group_coefficients(test_positive)], []
    progress = Progress("null: the decision refit on permuted labels", len(permuted), log,
                        every=max(1, -(-len(permuted) // 4)))
    for i, (fit_labels, test_labels) in enumerate(permuted, 1):
        s_, m_ = refit_tuned(z_fit, fit_labels.astype(int), C, l1_ratio, probe_settings)
        d = fold_decision(s_, m_, z_fit, fit_labels)
        weights.append(d.weight)
        coefficients.append(group_coefficients(test_labels))
        null_weights.append(d.weight)
        progress.step(i)
    acc = contrast_maps(encoder, np.stack(weights), decision.bias, np.stack(coefficients), volumes, settings.steps,
                        settings.batch_size, device, keep_subjects=keep_subjects)
    volume = acc.maps[0].astype(np.float32)
    null_maps = acc.maps[1:].astype(np.float32)
    brain = brain_support(volumes)
    info = {"null": null_facts(volume, null_maps, brain, null, null_weights)}
    return (AttributionResult(volume, info, null_maps, brain, np.asarray(test_positive, bool), acc.subjects),
            decision, acc)


def null_facts(volume: np.ndarray, null_maps: np.ndarray, brain: np.ndarray, null: NullSettings,
               null_weights: list[np.ndarray]) -> dict[str, Any]:
    """The sidecar's ``null``: N, seed, alpha, the null maxima, the family-wise threshold,
    the significant voxels (count, share of the brain), the peak's value, voxel and p."""
    peak = np.unravel_index(int(np.argmax(np.where(brain, np.abs(volume), -1.0))), volume.shape)
    value = float(volume[peak])
    facts: dict[str, Any] = {
        "test": "labels permuted across the subjects (train and test alike), the probe's decision refit with the same "
                "C and l1_ratio, the AD-minus-HC map recomputed; statistic: max |map| in the brain (family-wise)",
        "permutations": null.permutations, "seed": null.seed, "alpha": null.alpha, "brain_voxels": int(brain.sum()),
        "peak": {"value": value, "voxel": [int(i) for i in peak]}}
    if null.permutations == 0:
        facts.update(threshold=None, n_significant=None, significant_share=None)
        facts["peak"]["p"] = None
        return facts
    null_max = np.array([float(np.max(np.abs(m[brain]))) for m in null_maps])
    threshold = fwe_threshold(null_max, null.alpha)
    significant = brain & (np.abs(volume) > threshold)
    facts.update(threshold=threshold, n_significant=int(significant.sum()),
                 significant_share=float(significant.sum() / max(int(brain.sum()), 1)),
                 null_max=null_max.tolist(),
                 # the tuned (C, l1_ratio) can shrink a decision on permuted labels to all-zero
                 # weights, whose map is zero: a legitimate draw of the null, counted here
                 null_zero_decisions=int(sum(not np.any(w) for w in null_weights)))
    facts["peak"]["p"] = permutation_p(value, null_max)
    return facts


def links_map(model: torch.nn.Module, store: Any, data: dict[str, Any], source: str, device: torch.device,
              batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(*S) mean critic score of ``source``'s locations with the other sources' latents, on
    the volume grid, zero outside the brain; NoMap when no test subject has a pair."""
    others, total, per_pair = [], None, {}
    shape = store.arrays[source].shape[2:]
    support = np.zeros(shape, bool)
    for a, b in source_pairs(store.source_names):
        if source not in (a, b):
            continue
        other = b if a == source else a
        test = chosen_rows(data, data["use"][pair_name(a, b)], (MAP_SPLIT,), np.ones(len(data["split"]), bool))
        if len(test) == 0:
            per_pair[other] = {"n": 0}
            continue
        rows = store_rows(data["sample"][test], store.index["sample"].to_numpy())
        if not (store.present(source)[rows] & store.present(other)[rows]).all():
            raise ValueError(f"{source}~{other}: the latents mark test rows the store says lack a source")
        sums = None
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            xa = torch.as_tensor(read_volumes(store.arrays[source], part), device=device)
            xb = torch.as_tensor(read_volumes(store.arrays[other], part), device=device)
            scores = critic_scores(local_embeddings(model, source, xa), latent_embedding(model, other, xb)).sum(0)
            sums = scores if sums is None else sums + scores
            support |= brain_support(xa.cpu().numpy())
        mean = sums / len(rows)  # (M,)
        per_pair[other] = {"n": len(rows), "mean_score": float(mean.mean())}
        others.append(other)
        total = mean if total is None else total + mean
    if total is None:
        raise NoMap(f"{source}: no test subject has {source} and another source")
    located = (total / len(others)).reshape((LOCAL_SIDE,) * len(shape))  # the encoder's side-8 location grid
    volume = upsample_locations(located, tuple(shape)).cpu().numpy()
    return np.where(support, volume, 0.0).astype(np.float32), {"others": others, "pairs": per_pair}


def write_map(volume: np.ndarray | None, grid: Grid, nifti: Path, info: dict[str, Any], description: str,
              figure: Path | None = None, title: str = "") -> None:
    """The NIfTI (NaN everywhere when ``volume`` is None), its sidecar, and the PNG."""
    note = info.get("note", "")
    data = np.full(grid.shape, np.nan, np.float32) if volume is None else volume
    save_map(data, grid, nifti, description)
    write_json(json_ready(info), sidecar_path(nifti))
    if figure is not None:
        null = info.get("null") or {}
        plot_map(data, grid, figure, title, note, threshold=null.get("threshold"), peak_p=null.get("peak", {}).get("p"),
                 alpha=null.get("alpha"))


def run_maps(store_dir: str | Path, latents_npz: str | Path, model_path: str | Path, source: str, classes: list[str],
             grid: dict[str, Any], settings: dict[str, Any] | None = None, attribution: str | Path | None = None,
             figure: str | Path | None = None, links: str | Path | None = None, device: str = "auto",
             probe: str | Path | None = None, probe_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the requested maps of ``source`` (see the module docstring): ``attribution``
    (NIfTI; sidecar beside it) with its ``figure`` (PNG), and/or ``links`` (NIfTI; sidecar).
    classes: [negative, positive] labels (HC, AD); grid: {voxel_mm, size} of the store's
    volumes; settings: the dataset's ``maps`` section. The attribution needs ``probe``, the
    probe's table of these latents, and ``probe_settings``, the probe's binary settings
    (``classes`` may be among them). Returns the sidecars by map name."""
    if attribution is None and links is None:
        raise ValueError("nothing to do: give an attribution and/or a links output")
    if attribution is not None and probe is None:
        raise ValueError("the attribution map explains the probe's decision: give the probe's table (--probe)")
    if len(classes) != 2:
        raise ValueError(f"classes must be [negative, positive]; got {classes}")
    s = MapsSettings.from_config(settings)
    store = read_store(store_dir)
    if source not in store.source_names:
        raise ValueError(f"source {source!r} is not in the store {store_dir} (sources: {store.source_names})")
    volume_grid = map_grid(grid, tuple(store.arrays[source].shape[2:]))
    dev = select_device(device)
    model, meta = load_model(model_path, dev)
    label = f"{meta['method']} fold {meta['fold']}"
    base = {"method": meta["method"], "fold": meta["fold"], "source": source, "split": MAP_SPLIT,
            "epoch": meta.get("selected_epoch"), "status": meta["status"], "space": "MNI152NLin2009aSym",
            "grid": {"voxel_mm": float(grid["voxel_mm"]), "size": int(grid["size"])}}
    diverged = model is None or latents_status(Path(latents_npz)) == "diverged"
    data = None if diverged else load_latents(Path(latents_npz))
    if data is not None and data["sample"] is None:
        raise ValueError(f"{latents_npz} has no sample ids: remake it with `mmssl embed`")
    out = {}
    if attribution is not None:
        info = {**base, "map": "Integrated Gradients of the decision's logit, mean over positive minus mean over "
                "negative test subjects", "classes": {"negative": classes[0], "positive": classes[1]},
                "decision": "the probe's: elastic-net logistic regression on standardised z (saga, balanced) with "
                            f"its chosen C and l1_ratio, refit on {'+'.join(FIT_SPLITS)}",
                "baseline": "zeros (the z-normalised brain's mean)",
                "steps": s.steps, "library": "Integrated Gradients with Captum's Gauss-Legendre points, one batched "
                "vector-Jacobian product per group of decisions (mmssl.maps.attribution.contrast_maps)"}
        volume = None
        try:
            if diverged:
                raise NoMap("training diverged: no weights")
            tuned = TunedProbeSettings.from_config({k: v for k, v in (probe_settings or {}).items() if k != "classes"})
            info["probe_settings"] = asdict(tuned)
            result = attribution_map(model, store, data, source, classes, s, dev, probe_choice(probe, source), tuned)
            volume, found = result.volume, result.info
            info.update(found)
            log.info("%s %s: attribution of %d %s / %d %s test subjects, decision test ROC AUC %.3f, IG completeness "
                     "error %.2g; null of %d permutations: threshold %.3g, %s significant voxels, peak p %s", label,
                     source, found["n_positive"], classes[1], found["n_negative"], classes[0], found["test_roc_auc"],
                     found["ig_completeness_error"], s.null_settings.permutations, found["null"]["threshold"] or np.nan,
                     found["null"]["n_significant"], found["null"]["peak"]["p"])
        except NoMap as why:
            info["note"] = str(why)
            log.warning("%s %s: no attribution map: %s", label, source, why)
        write_map(volume, volume_grid, Path(attribution), info, f"IG {classes[1]}-{classes[0]} {label} {source}",
                  Path(figure) if figure is not None else None,
                  f"{label}: {source} attribution ({classes[1]} - {classes[0]})")
        out["attribution"] = info
    if links is not None:
        info = {**base, "map": "critic u_c . u_z / sqrt(D) of the source's locations with each other source's latent, "
                "mean over test subjects having both, then over the other sources; trilinear from the location grid; "
                "0 outside the brain"}
        volume = None
        try:
            if diverged:
                raise NoMap("training diverged: no weights")
            volume, found = links_map(model, store, data, source, dev, s.batch_size)
            info.update(found)
        except NoMap as why:
            info["note"] = str(why)
            log.warning("%s %s: no link map: %s", label, source, why)
        write_map(volume, volume_grid, Path(links), info, f"links {label} {source}")
        out["links"] = info
    return out

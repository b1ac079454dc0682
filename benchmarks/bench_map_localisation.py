"""Localisation of the attribution maps on the known-answer MRI benchmark (kind
synthetic_mri), against their permutation null: how much of each map's |value| falls in
the sphere where the generator planted the disease effect, against a sphere of a factor
unrelated to the label, and against the same pipeline with the labels permuted.

    PYTHONPATH=workflow python benchmarks/bench_map_localisation.py results/mri_known

Enrichment = (share of the map's |value| inside the sphere) / (the sphere's share of the
brain); 1 means no concentration. The brain is where the map's test volumes are non-zero
(the generator writes zeros outside it). For each map the script recomputes it with its
null (the settings its sidecar records: steps, null_test, the probe's settings; the
decision is the probe's, read from results/probe), checks the recomputed map is the
NIfTI, and reports:

- the map's planted-sphere enrichment with a 95 % bootstrap interval over its test
  subjects (resampled within each group, the decision held fixed; 1000 resamples);
- the unrelated sphere's enrichment;
- the null's planted-sphere enrichment over the N permuted-label maps: its mean and 95th
  percentile (a permuted decision shrunk to all-zero weights has no map and no enrichment:
  counted as "zero");
- localised: the map's enrichment above the null's 95th percentile (no: at or below it;
  n/a: fewer than 19 null maps with values);
- the peak's permutation p and the significant voxels (family-wise, from the sidecar).

The methods in the results (e.g. ``random``, an untrained encoder, and ``S``, a trained
one) are rows of their own; the null is each map's own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from mmssl.data.known_mri import ATROPHY_REGION, FALFF_REGION, FALFF_SPECIFIC_REGION, T1_SPECIFIC_REGION, region_mask
from mmssl.data.store import read_store
from mmssl.evaluate.latents import load_latents
from mmssl.evaluate.probe import TunedProbeSettings
from mmssl.maps.pipeline import attribution_map, probe_choice
from mmssl.maps.settings import MapsSettings
from mmssl.objectives.model_file import load_model

# source -> (planted region, unrelated region)
REGIONS = {"T1w": (ATROPHY_REGION, T1_SPECIFIC_REGION), "fALFF": (FALFF_REGION, FALFF_SPECIFIC_REGION)}
BOOTSTRAP = 1000


def region_in(affine: np.ndarray, shape: tuple, brain: np.ndarray, region: tuple) -> np.ndarray:
    return (region_mask(affine, shape, *region) > 0.5) & brain


def enrichment(volume: np.ndarray, brain: np.ndarray, inside: np.ndarray) -> float:
    """volume, brain, inside: (S, S, S); NaN for a map without values in the brain."""
    mass = np.abs(volume)
    total = float(mass[brain].sum())
    if total == 0.0:
        return float("nan")
    return float(mass[inside].sum() / total) / float(inside.sum() / brain.sum())


def bootstrap_interval(subjects: np.ndarray, positive: np.ndarray, brain: np.ndarray, inside: np.ndarray,
                       seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the enrichment of the AD-minus-HC mean of ``subjects``
    (n, *S), resampling subjects within each group."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    flat = subjects.reshape(len(subjects), -1)[:, brain.ravel()]  # only brain voxels matter
    inner = inside.ravel()[brain.ravel()]
    share = inner.sum() / inner.size
    values = []
    for _ in range(BOOTSTRAP):
        d = np.abs(flat[rng.choice(pos, len(pos))].mean(0) - flat[rng.choice(neg, len(neg))].mean(0))
        values.append(float(d[inner].sum() / d.sum()) / share)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def one_map(results: Path, store, method: str, fold: int, source: str, nifti: Path) -> list[str]:
    side = json.loads(nifti.with_name(nifti.name.replace(".nii.gz", ".json")).read_text())
    img = nib.load(nifti)
    observed = np.asarray(img.dataobj, np.float64)
    if not np.isfinite(observed).all():
        return ["n/a"] * 8 + [f"no map ({side.get('note', '')})"]
    if "null" not in side:
        return ["—"] * 8 + ["no null in the sidecar: remake the map"]
    null = side["null"]
    settings = MapsSettings.from_config({"steps": side["steps"], "null_test": {k: null[k] for k in
                                                                              ("permutations", "seed", "alpha")}})
    model, _ = load_model(results / "models" / method / f"fold{fold}" / "model.pt", torch.device("cpu"))
    data = load_latents(results / "latents" / method / f"fold{fold}.npz")
    classes = [side["classes"]["negative"], side["classes"]["positive"]]
    result = attribution_map(model, store, data, source, classes, settings, torch.device("cpu"),
                             probe_choice(results / "probe" / method / f"fold{fold}.tsv", source),
                             TunedProbeSettings(**side["probe_settings"]), keep_subjects=True)
    scale = float(np.abs(observed).max())
    if not np.allclose(result.volume, observed, atol=1e-4 * scale):
        raise ValueError(f"{nifti}: the recomputed map is not the NIfTI (max diff "
                         f"{np.abs(result.volume - observed).max():.3g}); the run's files do not belong together")
    planted, unrelated = (region_in(img.affine, observed.shape, result.brain, r) for r in REGIONS[source])
    hot = enrichment(observed, result.brain, planted)
    lo, hi = bootstrap_interval(result.subjects, result.positive, result.brain, planted)
    cold = enrichment(observed, result.brain, unrelated)
    nulls = np.array([enrichment(m, result.brain, planted) for m in result.null_maps])
    valued = nulls[np.isfinite(nulls)]
    zero = int(np.sum(~np.isfinite(nulls)))
    if len(valued) >= 19:
        mean, q95 = float(valued.mean()), float(np.percentile(valued, 95))
        localised = "**yes**" if hot > q95 else "no"
        null_cell = f"{mean:.2f} / {q95:.2f}"
    else:
        localised, null_cell = "n/a", (f"{valued.mean():.2f} / —" if len(valued) else "— / —")
    null_cell += f" ({len(valued)} maps, {zero} zero)"
    sig = "—" if null["n_significant"] is None else f"{null['n_significant']} ({100 * null['significant_share']:.1f} %)"
    return [f"{side['test_roc_auc']:.3f} (n {side['n_negative'] + side['n_positive']})", f"{hot:.2f} [{lo:.2f}, {hi:.2f}]",
            f"{cold:.2f}", null_cell, localised, f"{null['peak']['p']:.3f}" if null["peak"]["p"] is not None else "—",
            sig, f"{side['ig_completeness_error']:.3f}", ""]


def rows(results: Path) -> list[str]:
    """One Markdown table row per (method, fold, source)."""
    store = read_store(results / "store")
    out = []
    for fold_dir in sorted((results / "maps").glob("*/fold*")):
        method, fold = fold_dir.parent.name, int(fold_dir.name[4:])
        for source in REGIONS:
            nifti = fold_dir / f"{source}_desc-attribution_map.nii.gz"
            cells = one_map(results, store, method, fold, source, nifti) if nifti.exists() else ["—"] * 8 + ["not made"]
            out.append(f"| {method} | {fold} | {source} | " + " | ".join(cells) + " |")
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a synthetic_mri dataset's results folder, e.g. results/mri_known")
    args = parser.parse_args()
    print("| method | fold | source | decision test AUC | planted enrichment [95 % CI] | unrelated enrichment "
          "| null planted enrichment: mean / 95th pct | localised | peak p | significant voxels | IG error | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows(args.results)


if __name__ == "__main__":
    main()

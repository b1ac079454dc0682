"""Localisation of the attribution maps on the known-answer MRI benchmark (kind
synthetic_mri): how much of each map's |value| falls in the sphere where the generator
planted the disease effect, against a sphere of a factor unrelated to the label.

    PYTHONPATH=workflow python benchmarks/bench_map_localisation.py results/mri_known

Enrichment = (share of the map's |value| inside the sphere) / (the sphere's share of the
brain); 1 means no concentration. The brain is where the store's first volumes are
non-zero (the generator writes zeros outside it). Prints one Markdown row per (method,
fold) with the decision's test ROC AUC from the map's sidecar; a map without values (a
diverged run, a class without subjects) is shown as n/a with its note.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from mmssl.data.known_mri import ATROPHY_REGION, FALFF_REGION, FALFF_SPECIFIC_REGION, T1_SPECIFIC_REGION, region_mask
from mmssl.data.store import read_store

# source -> (planted region, unrelated region)
REGIONS = {"T1w": (ATROPHY_REGION, T1_SPECIFIC_REGION), "fALFF": (FALFF_REGION, FALFF_SPECIFIC_REGION)}


def enrichment(volume: np.ndarray, affine: np.ndarray, brain: np.ndarray, region: tuple) -> float:
    """volume, brain: (S, S, S); region: (centre mm, radius mm)."""
    inside = (region_mask(affine, volume.shape, *region) > 0.5) & brain
    mass = np.abs(volume)
    return float(mass[inside].sum() / mass[brain].sum()) / float(inside.sum() / brain.sum())


def rows(results: Path) -> list[str]:
    """One Markdown table row per (method, fold): the enrichments of each source's map."""
    store = read_store(results / "store")
    brains = {s: np.abs(np.asarray(store.arrays[s][:20], np.float32)).sum((0, 1)) > 0 for s in REGIONS}
    out = []
    for fold_dir in sorted((results / "maps").glob("*/fold*")):
        cells = []
        for source, (planted, unrelated) in REGIONS.items():
            nifti = fold_dir / f"{source}_desc-attribution_map.nii.gz"
            if not nifti.exists():
                cells += ["—", "—", "not made"]
                continue
            side = json.loads(nifti.with_name(nifti.name.replace(".nii.gz", ".json")).read_text())
            img = nib.load(nifti)
            volume = np.asarray(img.dataobj, np.float64)
            if not np.isfinite(volume).all():
                cells += ["n/a", "n/a", f"n/a ({side.get('note', '')})"]
                continue
            cells += [f"{enrichment(volume, img.affine, brains[source], planted):.2f}",
                      f"{enrichment(volume, img.affine, brains[source], unrelated):.2f}",
                      f"{side['test_roc_auc']:.3f} (n {side['n_negative'] + side['n_positive']})"]
        out.append(f"| {fold_dir.parent.name} | {fold_dir.name[4:]} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a synthetic_mri dataset's results folder, e.g. results/mri_known")
    args = parser.parse_args()
    print("| method | fold | T1w: atrophy (planted) | T1w: frontal (unrelated) | T1w decision test AUC "
          "| fALFF: cingulate (planted) | fALFF: parietal (unrelated) | fALFF decision test AUC |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows(args.results)))


if __name__ == "__main__":
    main()

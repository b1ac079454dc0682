"""Time the python-backend MRI preprocessing of one subject on one core, and measure its accuracy.

Subject: nilearn's 1 mm MNI152 template plus a skull-like shell (CSF gap, dark bone,
bright scalp), optionally bent by a smooth random deformation (``--warp-mm``: peak
displacement, standing in for anatomy an affine cannot follow), then moved by a known
random affine (rotation <= 10 deg, translation <= 10 mm, scale 0.9-1.1) onto an
OASIS-3-sized native grid: T1w 176 x 256 x 256 at 1 mm; mean EPI and fALFF 64 x 64 x 36
at 4 mm (T2*-like contrast). Timed, with files in and out like the Snakemake rules:

* T1 path: ``mmssl preprocess-anat --suffix T1w`` (the rule's command) = header check, load, mask
  (register + template mask), resample to 3 mm 64³, write its five outputs;
* EPI path: the second half of ``mmssl preprocess-bold`` = register the mean EPI, move the
  fALFF map (fALFF itself: bench_falff.py).

Reported: wall time per path (target: T1 + EPI < 60 s), mean / max displacement error of
the recovered transforms over template brain voxels, Dice of the python backend's native
brain mask with the true one.

    OMP_NUM_THREADS=1 PYTHONPATH=workflow python benchmarks/bench_preprocess_subject.py [--warp-mm 4] [--seed 0]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / scipy load their thread pools

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

from mmssl.cli import main as mmssl  # noqa: E402
from mmssl.paths import derivatives_of  # noqa: E402
from mmssl.preprocess.masking import brain_mask_python, dice  # noqa: E402
from mmssl.preprocess.pipeline import falff_to_mni  # noqa: E402
from mmssl.preprocess.registration import apply_affine, load_transform  # noqa: E402
from mmssl.preprocess.settings import MriSettings  # noqa: E402
from mmssl.preprocess.spatial import GRID_THRESHOLD, mni_brain_mask, mni_template  # noqa: E402
from mmssl.preprocess.volumes import load_map, load_mask, load_volume, save_xfm  # noqa: E402


def random_affine(rng: np.random.Generator) -> np.ndarray:
    """4x4 template -> native world map: translate @ rotate @ scale."""
    rx, ry, rz = np.deg2rad(rng.uniform(-10, 10, 3))
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rot_z @ rot_y @ rot_x @ np.diag(rng.uniform(0.9, 1.1, 3))
    m[:3, 3] = rng.uniform(-10, 10, 3)
    return m


def smooth_warp(shape: tuple[int, ...], peak_mm: float, rng: np.random.Generator, voxel_mm: float = 1.0) -> np.ndarray:
    """(3, X, Y, Z) smooth displacement field in voxels, max |component| = peak_mm."""
    if peak_mm <= 0:
        return np.zeros((3, *shape), np.float32)
    coarse = rng.normal(size=(3, 6, 7, 6))
    field = np.stack([ndimage.zoom(c, np.array(shape) / c.shape, order=3) for c in coarse])
    return (field / np.abs(field).max() * peak_mm / voxel_mm).astype(np.float32)


def head_in_mni(warp_mm: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head, brain mask, affine) on the 1 mm template grid padded by 20 voxels."""
    tpl, mask = mni_template(1), mni_brain_mask(1, GRID_THRESHOLD)
    pad = 20
    t1 = np.pad(tpl.get_fdata(dtype=np.float32), pad)
    brain = np.pad(np.asarray(mask.dataobj) > 0, pad)
    affine = tpl.affine.copy()
    affine[:3, 3] -= pad
    dist = ndimage.distance_transform_edt(~brain)
    head = np.select([brain, dist <= 3, dist <= 9, dist <= 15], [t1 * brain, 0.12, 0.04, 0.75], 0.0).astype(np.float32)
    warp = smooth_warp(head.shape, warp_mm, rng)
    if warp_mm > 0:
        coords = np.indices(head.shape, dtype=np.float32) + warp
        head = ndimage.map_coordinates(head, coords, order=1)
        brain = ndimage.map_coordinates(brain.astype(np.float32), coords, order=1) > 0.5
    return head, brain, affine


def native_grid(shape: tuple[int, int, int], voxel_mm: float, centre_mm: np.ndarray) -> np.ndarray:
    """LAS grid affine (as dcm2niix often writes) centred on centre_mm."""
    affine = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = centre_mm - affine[:3, :3] @ (np.array(shape) - 1) / 2
    return affine


def make_subject(folder: Path, warp_mm: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    head, brain, mni_affine = head_in_mni(warp_mm, rng)
    world_from_mni = random_affine(rng)
    centre = world_from_mni[:3, 3] + np.array([0.0, -20.0, 0.0])
    # The image at native point x shows the MNI-space head at inv(world_from_mni) x.
    pull = np.linalg.inv(world_from_mni)
    t1_grid = ((176, 256, 256), native_grid((176, 256, 256), 1.0, centre))
    t1 = apply_affine(nib.Nifti1Image(head, mni_affine), pull, t1_grid).get_fdata(dtype=np.float32)
    t1 = np.hypot(t1 + rng.normal(0, 0.015, t1.shape), rng.normal(0, 0.015, t1.shape))
    truth_mask = apply_affine(nib.Nifti1Image(brain.astype(np.float32), mni_affine), pull, t1_grid).get_fdata() > 0.5
    epi_grid = ((64, 64, 36), native_grid((64, 64, 36), 4.0, centre))
    brain_epi = apply_affine(nib.Nifti1Image(brain.astype(np.float32), mni_affine), pull, epi_grid).get_fdata() > 0.5
    t1_epi = apply_affine(nib.Nifti1Image(head * brain, mni_affine), pull, epi_grid).get_fdata()
    mean_epi = np.where(brain_epi, 80 + 80 * (1 - t1_epi) + rng.normal(0, 2, t1_epi.shape), 0).astype(np.float32)
    falff = np.where(brain_epi, rng.uniform(0.3, 0.6, t1_epi.shape), 0).astype(np.float32)
    paths = {"t1": folder / "sub-01_T1w.nii.gz", "mean": folder / "mean.nii.gz", "falff": folder / "falff.nii.gz", "epimask": folder / "epimask.nii.gz"}
    nib.save(nib.Nifti1Image((t1 * 1000).astype(np.int16), t1_grid[1]), paths["t1"])
    nib.save(nib.Nifti1Image(mean_epi, epi_grid[1]), paths["mean"])
    nib.save(nib.Nifti1Image(falff, epi_grid[1]), paths["falff"])
    nib.save(nib.Nifti1Image(brain_epi.astype(np.uint8), epi_grid[1]), paths["epimask"])
    return {"paths": paths, "world_from_mni": world_from_mni, "truth_mask": truth_mask}


def displacement(fixed_to_moving: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean / max distance (mm) between where the two maps send template brain voxels."""
    mask = mni_brain_mask(1, GRID_THRESHOLD)
    pts = np.c_[np.argwhere(np.asarray(mask.dataobj) > 0), np.ones(int(np.count_nonzero(mask.dataobj)))] @ mask.affine.T
    d = np.linalg.norm((pts @ fixed_to_moving.T - pts @ truth.T)[:, :3], axis=1)
    return float(d.mean()), float(d.max())


def run_t1(t1: Path, root: Path) -> tuple[float, Path]:
    """The rule's command, preprocess-anat --suffix T1w: (seconds, the transform it wrote)."""
    out = derivatives_of(root, t1)
    flags = [arg for key, path in out.items() for arg in (f"--out-{key.lower()}", path)]
    start = time.perf_counter()
    if mmssl(["preprocess-anat", "--image", str(t1), "--suffix", "T1w", "--settings-json", "{}", *flags]):
        raise SystemExit("preprocess-anat failed")
    if Path(out["status"]).read_text().count("\n") > 1:
        raise SystemExit(f"the T1w was excluded: {Path(out['status']).read_text()}")
    return time.perf_counter() - start, Path(out["xfm"])


def run_epi(paths: dict[str, Path], xfm: Path) -> float:
    """The second half of preprocess-bold (fALFF itself is timed by bench_falff.py): read
    the native fALFF map, mean EPI and EPI mask, register, move, write the transform."""
    start = time.perf_counter()
    result = falff_to_mni(load_map(paths["falff"]), load_volume(paths["mean"]), load_mask(paths["epimask"]),
                          MriSettings.from_config({}))
    save_xfm(result.registration.fixed_to_moving, xfm)
    return time.perf_counter() - start


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--warp-mm", type=float, default=0.0, help="peak non-linear displacement added to the head")
    cli.add_argument("--seed", type=int, default=0)
    opts = cli.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    mni_template(1), mni_template(2), mni_brain_mask(1, GRID_THRESHOLD)  # nilearn loads are cached per process; keep them out of the timing
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subject = make_subject(folder, opts.warp_mm, opts.seed)
        p = subject["paths"]
        t1_s, t1_xfm = run_t1(p["t1"], folder / "preproc")
        epi_s = run_epi(p, folder / "epi.txt")
        t1_err = displacement(load_transform(t1_xfm), subject["world_from_mni"])
        epi_err = displacement(load_transform(f"{tmp}/epi.txt"), subject["world_from_mni"])
        native = brain_mask_python(nib.load(p["t1"]))
        mask_dice = dice(np.asarray(native.mask.dataobj) > 0, subject["truth_mask"])
    print(f"warp {opts.warp_mm:g} mm, seed {opts.seed}, 1 thread")
    print(f"T1 path  (load + mask/register + resample + write): {t1_s:6.1f} s   error mean {t1_err[0]:.2f} mm, max {t1_err[1]:.2f} mm")
    print(f"EPI path (register mean EPI + move fALFF + write):  {epi_s:6.1f} s   error mean {epi_err[0]:.2f} mm, max {epi_err[1]:.2f} mm")
    print(f"total {t1_s + epi_s:.1f} s (target < 60 s); native brain-mask Dice vs truth {mask_dice:.3f}")


if __name__ == "__main__":
    main()

"""The PNG of a map: three orthogonal slices through its strongest voxel over the MNI152
template (nilearn ``plot_stat_map``), drawn headless (Agg), so it runs on cluster nodes.
A map without values (a diverged run, too few subjects) becomes a figure saying why."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmssl.io import atomic_path
from mmssl.preprocess.spatial import Grid

# voxels below this share of the map's largest |value| are not coloured, so the template
# shows through and the regions the map points at stand out
THRESHOLD_SHARE = 0.2


def peak_mm(volume: np.ndarray, grid: Grid) -> tuple[float, float, float]:
    """MNI mm of the voxel with the largest |value| (the slices' crossing)."""
    ijk = np.unravel_index(int(np.nanargmax(np.abs(volume))), volume.shape)
    return tuple(float(v) for v in (grid.affine @ np.r_[ijk, 1.0])[:3])  # type: ignore[return-value]


def plot_map(volume: np.ndarray, grid: Grid, path: str | Path, title: str, note: str = "",
             threshold: float | None = None, peak_p: float | None = None, alpha: float | None = None) -> Path:
    """Write the PNG of ``volume`` (X, Y, Z) on ``grid`` atomically; ``note``: the reason a
    map has no values (drawn instead of the slices). ``threshold``: the permutation null's
    family-wise threshold of |value| (in the title; the significant voxels, |value| above
    it, outlined in black), ``peak_p`` the peak's permutation p, ``alpha`` the level."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    path = Path(path)
    finite = np.isfinite(volume)
    peak = float(np.max(np.abs(volume[finite]))) if finite.any() else 0.0
    with atomic_path(path) as tmp:
        if note or peak == 0.0:
            fig, ax = plt.subplots(figsize=(8, 2))
            ax.text(0.5, 0.5, f"{title}\nno map: {note or 'all values are zero'}", ha="center", va="center", wrap=True)
            ax.axis("off")
            fig.savefig(tmp, dpi=100)
            plt.close(fig)
            return path
        import nibabel as nib
        from nilearn import plotting

        img = nib.Nifti1Image(np.where(finite, volume, 0.0).astype(np.float32), grid.affine)
        fig = plt.figure(figsize=(10, 3.6))
        if threshold is not None and np.isfinite(threshold):
            significant = np.abs(np.where(finite, volume, 0.0)) > threshold
            title = (f"{title}\nFWE threshold |v| > {threshold:.3g} (alpha {alpha}): {int(significant.sum())} "
                     f"significant voxels (outlined); peak p = {peak_p:.3g}")
        else:
            significant = None
            if threshold is not None:
                title = f"{title}\nno voxel can be significant: too few permutations for alpha {alpha}"
        display = plotting.plot_stat_map(img, cut_coords=peak_mm(np.where(finite, volume, 0.0), grid),
                                         display_mode="ortho", threshold=THRESHOLD_SHARE * peak, vmax=peak,
                                         cmap="cold_hot", symmetric_cbar=True, colorbar=True, title=title,
                                         figure=fig, draw_cross=False)
        if significant is not None and significant.any():
            display.add_contours(nib.Nifti1Image(significant.astype(np.float32), grid.affine), levels=[0.5],
                                 colors="k", linewidths=1.0)
        display.savefig(str(tmp), dpi=100)
        display.close()
        plt.close(fig)
    return path

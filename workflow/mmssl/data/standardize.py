"""Histogram standardisation (Nyúl & Udupa, via TorchIO) and z-normalisation in the brain.

Landmarks are learnt per modality and fold from that fold's **training** subjects only.
:func:`train_landmarks` takes the fold's split table and refuses any subject that is not
``train`` in it, so validation, test or hold-out intensities cannot leak into the
landmarks whatever the caller passes. TorchIO's default percentile cutoff (0.01, 0.99) is
used for training and applying alike (its transform has no cutoff argument, so another
training cutoff would silently mismatch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchio as tio

from mmssl.io import atomic_path

PathLike = str | Path


class LeakageError(ValueError):
    """Landmarks were asked to be trained on subjects that are not in the training split."""


def training_subjects(split_table: pd.DataFrame) -> list[str]:
    """Sorted subjects whose split is ``train`` in one fold's split table (subject, label, split)."""
    missing = {"subject", "split"} - set(split_table.columns)
    if missing:
        raise ValueError(f"split table lacks columns {sorted(missing)}; has {list(split_table.columns)}")
    return sorted(split_table.loc[split_table["split"] == "train", "subject"].astype(str).unique())


def train_landmarks(
    images: Mapping[str, Sequence[PathLike]],
    split_table: pd.DataFrame,
    masks: Mapping[str, Sequence[PathLike]] | None = None,
) -> np.ndarray:
    """Histogram landmarks of one modality from the training subjects of one fold.

    Args:
        images: subject -> that subject's image paths (NIfTI, any number per subject).
        split_table: the fold's split table (columns subject, split); every key of
            ``images`` must have split ``train`` there, else :class:`LeakageError`.
        masks: subject -> mask paths, parallel to ``images`` (voxels > 0 are used);
            None uses every voxel.

    Returns: (13,) float64 landmarks (TorchIO's percentiles 1, 10, 20, ..., 90, 99 mapped
    to its standard range), independent of the order of ``images``.
    """
    allowed = set(training_subjects(split_table))
    leaked = sorted(set(map(str, images)) - allowed)
    if leaked:
        splits = split_table.set_index(split_table["subject"].astype(str))["split"]
        named = ", ".join(f"{s} ({splits.get(s, 'not in split table')})" for s in leaked[:10])
        raise LeakageError(f"histogram landmarks may only use training subjects; got {len(leaked)} others: {named}")
    if not images:
        raise ValueError("no training images given for histogram landmarks")
    paths, mask_paths = [], []
    # Subjects, and each subject's (image, mask) pairs, are sorted by path so the float
    # sums inside TorchIO's averaging cannot depend on the order of the input at all.
    for subject in sorted(images, key=str):
        subject_paths = [str(p) for p in images[subject]]
        if masks is None:
            paths += sorted(subject_paths)
            continue
        subject_masks = [str(p) for p in masks[subject]]
        if len(subject_masks) != len(subject_paths):
            raise ValueError(f"subject {subject}: {len(subject_paths)} images but {len(subject_masks)} masks")
        for image, mask in sorted(zip(subject_paths, subject_masks)):
            paths.append(image)
            mask_paths.append(mask)
    return tio.HistogramStandardization.train(
        paths, mask_path=mask_paths if masks is not None else None, progress=False
    )


def landmarks_from_samples(samples: pd.DataFrame, split_table: pd.DataFrame, column: str,
                           mask_column: str | None = "mask") -> np.ndarray:
    """Landmarks for the image column ``column`` of a samples table (one row per sample:
    subject, ``column``, ``mask_column``; ``column`` empty or NaN where the sample lacks
    that source), from the rows of training subjects that have it. ValueError when no
    training subject of the fold has it (the source cannot be standardised)."""
    for col in ("subject", column) + ((mask_column,) if mask_column else ()):
        if col not in samples.columns:
            raise ValueError(f"samples table lacks column {col!r}; has {list(samples.columns)}")
    present = samples[column].notna() & (samples[column].astype(str) != "")
    train = samples[present & samples["subject"].astype(str).isin(training_subjects(split_table))]
    if train.empty:
        raise ValueError(f"no training subject of this fold has source {column!r} ({int(present.sum())} samples have it "
                         "in all): its histogram landmarks cannot be learnt; drop it from the dataset's sources")
    grouped = train.groupby(train["subject"].astype(str), sort=True)
    images = {s: list(g[column]) for s, g in grouped}
    masks = {s: list(g[mask_column]) for s, g in grouped} if mask_column else None
    return train_landmarks(images, split_table, masks)


def save_landmarks(landmarks: np.ndarray, path: PathLike) -> Path:
    """Write landmarks to ``path`` (.npy) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file object: numpy adds no second .npy suffix
        np.save(handle, np.asarray(landmarks, dtype=np.float64))
    return Path(path)


def load_landmarks(path: PathLike) -> np.ndarray:
    """Read landmarks written by :func:`save_landmarks`; checks shape and monotonicity."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmarks file {path} not found")
    landmarks = np.load(path)
    if landmarks.ndim != 1 or landmarks.size < 3 or not np.all(np.diff(landmarks) >= 0):
        raise ValueError(f"{path}: expected a 1D non-decreasing array of histogram landmarks, got {landmarks!r}")
    return landmarks


def apply_standardization(volume: np.ndarray, mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Histogram-standardise, then z-normalise inside ``mask``; 0 outside it.

    Args:
        volume: (X, Y, Z) intensities.
        mask: (X, Y, Z) bool brain mask; percentiles, mean and std come from its voxels.
        landmarks: from :func:`train_landmarks` for this modality and fold.
    Returns: (X, Y, Z) float32, mean 0 and std 1 over ``mask``, exactly 0 elsewhere.
    """
    volume = np.asarray(volume, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if volume.shape != mask.shape:
        raise ValueError(f"volume shape {volume.shape} and mask shape {mask.shape} differ")
    if mask.sum() < 2:
        raise ValueError("brain mask has fewer than 2 voxels; cannot standardise")
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(volume[None].copy())),
        mask=tio.LabelMap(tensor=torch.from_numpy(mask[None].astype(np.uint8))),
    )
    transform = tio.Compose(
        [tio.HistogramStandardization({"image": landmarks}, masking_method="mask"), tio.ZNormalization(masking_method="mask")]
    )
    out = transform(subject)["image"].data[0].numpy().astype(np.float32)
    out[~mask] = 0.0
    return out

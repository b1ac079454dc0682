"""MNIST-SVHN (Shi et al. 2019; paper 3.1): an MNIST digit resized to 32x32 grayscale
paired with an SVHN 32x32 RGB digit of the same class.

Source files: the four standard MNIST IDX files (see ``mmssl.data.mnist``) and SVHN's
``train_32x32.mat`` / ``test_32x32.mat`` (X: (32, 32, 3, N) uint8, y: (N, 1) with 10
for the digit zero). The train pool pairs train files with train files, the test pool
test files with test files, so no image is shared between the pools.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import torch
from torch.nn import functional as F

from mmssl.data.mnist import DataFileError, read_mnist_dir
from mmssl.data.store import write_store
from mmssl.types import SourceSpec

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SIDE = 32
SOURCES = [SourceSpec("mnist", 1, SIDE, 2), SourceSpec("svhn", 3, SIDE, 2)]


# ---------------------------------------------------------------- reading
def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN cropped-digits .mat file -> images (N, 3, 32, 32) uint8, labels (N,)
    int64 in 0..9 (SVHN's label 10 is the digit zero)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(
            f"SVHN file {path} not found. Put train_32x32.mat and test_32x32.mat there "
            "(run the workflow's download rule, or copy them by hand)."
        )
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, NotImplementedError, TypeError) as err:  # scipy's errors for non-MAT / v7.3 / truncated
        raise DataFileError(f"{path}: not a readable MATLAB file ({err})") from err
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise DataFileError(f"{path}: lacks variable(s) {missing}; an SVHN .mat has X (32, 32, 3, N) and y (N, 1)")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (SIDE, SIDE, 3):
        raise DataFileError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise DataFileError(f"{path}: X has dtype {x.dtype}, expected uint8")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or len(y) != x.shape[3]:
        raise DataFileError(f"{path}: y has shape {np.asarray(mat['y']).shape}, expected ({x.shape[3]}, 1)")
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataFileError(f"{path}: labels span {labels.min()}..{labels.max()}, expected 1..10")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (row, col, ch, n) -> (n, ch, row, col)
    return images, labels % 10


# ---------------------------------------------------------------- pairing
def pair_mnist_svhn(mnist_labels: np.ndarray, svhn_labels: np.ndarray, per_mnist: int, seed: int) -> np.ndarray:
    """(P, 2) int64 pairs (mnist_index, svhn_index), every pair of one class.

    As in Shi et al., each MNIST image gets ``per_mnist`` random SVHN partners of its
    class, seeded. Per class c (MNIST images m_1..m_n in random order, SVHN images of
    the class in a random order s_0..s_{S-1}), image m_i takes s_j for j = i*per_mnist
    + r (mod S), r = 0..per_mnist-1. So one MNIST image's partners are distinct whenever
    S >= per_mnist, and every SVHN image of the class is used equally often (within one).

    Shi et al. truncate both classes to the smaller one and drop the surplus MNIST
    images; we keep every MNIST image and reuse SVHN images instead. When a class runs
    short (S < per_mnist) its MNIST images get only S partners (all of the class), and a
    class with no SVHN image contributes no pair: the count is bounded by
    n * min(per_mnist, S) per class. Pairs are sorted by (mnist_index, svhn_index).
    """
    if per_mnist < 1:
        raise ValueError(f"per_mnist must be >= 1, got {per_mnist}")
    rng = np.random.default_rng(seed)
    mnist_labels, svhn_labels = np.asarray(mnist_labels), np.asarray(svhn_labels)
    pairs = []
    for c in np.unique(mnist_labels):
        m_idx = rng.permutation(np.flatnonzero(mnist_labels == c))
        s_idx = rng.permutation(np.flatnonzero(svhn_labels == c))
        if len(s_idx) == 0:
            continue
        r = min(per_mnist, len(s_idx))
        slots = np.arange(len(m_idx) * r).reshape(len(m_idx), r) % len(s_idx)
        pairs.append(np.stack([np.repeat(m_idx, r), s_idx[slots].ravel()], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    out = np.concatenate(pairs).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


# ---------------------------------------------------------------- store
def resize_mnist(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) float32 in [0, 1]: bilinear, no antialias
    (bilinear weights are convex, so values stay in [0, 1])."""
    out = np.empty((len(images), 1, SIDE, SIDE), dtype=np.float32)
    for start in range(0, len(images), chunk):
        t = torch.from_numpy(images[start : start + chunk]).float().div_(255.0).unsqueeze(1)
        resized = F.interpolate(t, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=False)
        out[start : start + chunk] = resized.numpy()
    return out


@dataclass
class _Pool:
    """One pool's pairs (P, 2) and what they index: MNIST images resized (n, 1, 32, 32)
    float32, SVHN images (S, 3, 32, 32) uint8, MNIST labels (n,)."""

    name: str
    pairs: np.ndarray
    mnist32: np.ndarray
    svhn: np.ndarray
    labels: np.ndarray


def build_mnist_svhn_store(
    mnist_dir: str | Path,
    svhn_dir: str | Path,
    out_dir: str | Path,
    *,
    per_mnist: int,
    seed: int,
    limit: int | None = None,
    dtype: str = "float16",
) -> Path:
    """Pair MNIST and SVHN per pool and write the store: sources "mnist" (1, 32, 32) and
    "svhn" (3, 32, 32), both in [0, 1]; index columns sample (pair id), subject, label,
    pool, mnist_index, svhn_index (row numbers inside that pool's files).

    per_mnist: SVHN partners per MNIST image (Shi et al.'s script uses 30; the config's
    ``per_mnist``). seed: pairing seed (``pair_seed``). limit: only the first ``limit``
    MNIST images of each pool (None: all), for quick runs. dtype: "float16" (default) or "float32"; float16 is lossless for SVHN's
    8-bit levels (k/255 rounds back to k) and halves a full store (~2.1 M pairs x 4096
    values at per_mnist = 30, ~17 GB in float16).
    """
    if per_mnist < 1:
        raise ValueError(f"MNIST-SVHN per_mnist must be >= 1, got {per_mnist}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"MNIST-SVHN dtype must be 'float16' or 'float32', got {dtype!r}")
    digits = read_mnist_dir(mnist_dir)
    pools = []
    for i, name in enumerate(("train", "test")):
        mnist_images = digits.images[digits.pool == name][:limit]
        labels = digits.labels[digits.pool == name][:limit]
        svhn, svhn_labels = read_svhn_mat(Path(svhn_dir) / SVHN_FILES[name])
        # a stream per pool: changing the test files never changes the train pairs
        pool_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        pairs = pair_mnist_svhn(labels, svhn_labels, per_mnist, pool_seed)
        pools.append(_Pool(name, pairs, resize_mnist(mnist_images), svhn, labels))
    out_dir = Path(out_dir)
    scratch = out_dir.with_name(out_dir.name + ".scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        index, arrays = _assemble(pools, dtype, scratch)
        return write_store(out_dir, index, arrays, SOURCES)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _assemble(
    pools: list[_Pool], dtype: str, scratch: Path, chunk: int = 65536
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The store index and arrays, memory-mapped in ``scratch`` so a full-size store
    need not fit in RAM."""
    n = sum(len(p.pairs) for p in pools)
    arrays = {
        s.name: np.lib.format.open_memmap(
            scratch / f"{s.name}.npy", mode="w+", dtype=dtype, shape=(n, s.channels, SIDE, SIDE)
        )
        for s in SOURCES
    }
    frames, start = [], 0
    for p in pools:
        for lo in range(0, len(p.pairs), chunk):
            rows = p.pairs[lo : lo + chunk]
            arrays["mnist"][start + lo : start + lo + len(rows)] = p.mnist32[rows[:, 0]]
            arrays["svhn"][start + lo : start + lo + len(rows)] = p.svhn[rows[:, 1]].astype(np.float32) / 255.0
        frames.append(
            pd.DataFrame(
                {
                    "sample": [f"{p.name}-{i}" for i in range(len(p.pairs))],
                    # folds group by the MNIST image: all pairs of one MNIST digit land in the
                    # same fold, so no MNIST image is in both a fold's training and validation
                    # split. SVHN images are reused across MNIST images (each about
                    # per_mnist * n_class_mnist / n_class_svhn times), so one SVHN image can
                    # still sit on both sides of a train-pool fold; the test pool is built
                    # from the test files only and is leak-free on both sides.
                    "subject": [f"{p.name}-mnist-{i}" for i in p.pairs[:, 0]],
                    "label": p.labels[p.pairs[:, 0]],
                    "pool": p.name,
                    "mnist_index": p.pairs[:, 0],
                    "svhn_index": p.pairs[:, 1],
                }
            )
        )
        start += len(p.pairs)
    for a in arrays.values():
        a.flush()
    return pd.concat(frames, ignore_index=True), arrays

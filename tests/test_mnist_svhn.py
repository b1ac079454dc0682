"""MNIST-SVHN: SVHN .mat reading, Shi et al.-style pairing and the store, on tiny files
written in the real formats (IDX for MNIST, MATLAB v5 .mat for SVHN)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import pytest
import scipy.io

from mmssl.data.mnist import DataFileError, write_idx
from mmssl.data.commands import add_commands
from mmssl.data.store import read_store
from mmssl.data.svhn import build_mnist_svhn_store, pair_mnist_svhn, read_svhn_mat

N_MNIST = {"train": 40, "test": 20}
N_SVHN = {"train": 60, "test": 30}
MARK = (1, 5, 2)  # (row, col, channel) of a marker pixel, to check the axis order


def svhn_arrays(n: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVHN layout X (32, 32, 3, n) uint8, y (n, 1) with 10 for zero. Image j is constant
    (value 3 + j + offset, channel c adds 60 c) except a marker pixel of 255."""
    digits = np.arange(n) % 10
    x = np.empty((32, 32, 3, n), dtype=np.uint8)
    for j in range(n):
        for c in range(3):
            x[:, :, c, j] = 3 + j + offset + 60 * c
    row, col, ch = MARK
    x[row, col, ch, :] = 255
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
    return x, y, digits


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Tiny MNIST (IDX) and SVHN (.mat) folders; MNIST image i of a pool is constant i + 1."""
    root = tmp_path_factory.mktemp("raw")
    mnist_dir, svhn_dir = root / "mnist", root / "svhn"
    mnist_dir.mkdir(), svhn_dir.mkdir()
    meta = {}
    for pool, prefix in (("train", "train"), ("test", "t10k")):
        n = N_MNIST[pool]
        images = np.repeat(np.arange(1, n + 1, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
        labels = (np.arange(n) * 7 % 10).astype(np.uint8)
        write_idx(mnist_dir / f"{prefix}-images-idx3-ubyte", images)
        write_idx(mnist_dir / f"{prefix}-labels-idx1-ubyte.gz", labels)
        x, y, digits = svhn_arrays(N_SVHN[pool], offset=0 if pool == "train" else 100)
        scipy.io.savemat(svhn_dir / f"{pool}_32x32.mat", {"X": x, "y": y})
        meta[pool] = {"mnist_labels": labels.astype(np.int64), "svhn_labels": digits, "svhn_x": x}
    return mnist_dir, svhn_dir, meta


# ---------------------------------------------------------------- reading .mat
def test_read_svhn_mat_layout_and_labels(raw):
    _, svhn_dir, meta = raw
    images, labels = read_svhn_mat(svhn_dir / "train_32x32.mat")
    assert images.shape == (60, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, meta["train"]["svhn_labels"])  # 10 -> 0
    assert 0 in labels and labels.max() == 9
    row, col, ch = MARK
    assert (images[:, ch, row, col] == 255).all()  # (row, col, ch, n) -> (n, ch, row, col)
    assert images[7, 1, 0, 0] == 3 + 7 + 60


def test_read_svhn_mat_errors(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        read_svhn_mat(tmp_path / "train_32x32.mat")
    bad = tmp_path / "corrupt.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
    with pytest.raises(DataFileError, match="corrupt.mat"):
        read_svhn_mat(bad)
    keys = tmp_path / "keys.mat"
    scipy.io.savemat(keys, {"images": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataFileError, match=r"lacks variable\(s\) \['X'\]"):
        read_svhn_mat(keys)
    shape = tmp_path / "shape.mat"
    scipy.io.savemat(shape, {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataFileError, match=r"expected \(32, 32, 3, N\)"):
        read_svhn_mat(shape)
    count = tmp_path / "count.mat"
    scipy.io.savemat(count, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))})
    with pytest.raises(DataFileError, match="y has shape"):
        read_svhn_mat(count)


# ---------------------------------------------------------------- pairing
def test_pairs_share_labels_and_counts_match():
    g = np.random.default_rng(0)
    mnist, svhn = g.integers(0, 10, 200), g.integers(0, 10, 1000)
    pairs = pair_mnist_svhn(mnist, svhn, per_mnist=5, seed=3)
    assert len(pairs) == 5 * 200
    np.testing.assert_array_equal(mnist[pairs[:, 0]], svhn[pairs[:, 1]])
    per_image = Counter(pairs[:, 0].tolist())
    assert set(per_image.values()) == {5} and len(per_image) == 200
    assert len({tuple(p) for p in pairs}) == len(pairs)  # an image's partners are distinct


def test_pairs_balance_svhn_use_and_bound_short_classes():
    mnist = np.array([0] * 30 + [1] * 4 + [2] * 3)
    svhn = np.array([0] * 7 + [1] * 2)  # class 1 has fewer SVHN images than per_mnist, class 2 none
    pairs = pair_mnist_svhn(mnist, svhn, per_mnist=3, seed=0)
    cls = mnist[pairs[:, 0]]
    assert (cls == 0).sum() == 30 * 3
    assert (cls == 1).sum() == 4 * 2  # bounded by the 2 SVHN images of class 1
    assert (cls == 2).sum() == 0  # no SVHN image of class 2: no pair
    use = np.bincount(pairs[cls == 0, 1], minlength=7)[:7]
    assert use.max() - use.min() <= 1  # 90 slots over 7 images: 12 or 13 each
    np.testing.assert_array_equal(mnist[pairs[:, 0]], svhn[pairs[:, 1]])


def test_pairs_are_seeded():
    g = np.random.default_rng(1)
    mnist, svhn = g.integers(0, 10, 100), g.integers(0, 10, 300)
    a = pair_mnist_svhn(mnist, svhn, 4, seed=11)
    np.testing.assert_array_equal(a, pair_mnist_svhn(mnist, svhn, 4, seed=11))
    assert not np.array_equal(a, pair_mnist_svhn(mnist, svhn, 4, seed=12))


# ---------------------------------------------------------------- store
def test_store_content(raw, tmp_path):
    mnist_dir, svhn_dir, meta = raw
    store = read_store(build_mnist_svhn_store(mnist_dir, svhn_dir, tmp_path / "ms", per_mnist=2, seed=0))
    assert [(s.name, s.channels, s.size, s.dims) for s in store.sources] == [("mnist", 1, 32, 2), ("svhn", 3, 32, 2)]
    idx = store.index
    counts = idx.groupby("pool").size().to_dict()
    # every class of the tiny MNIST pools has >= 2 SVHN images of its class
    assert counts == {"train": 2 * N_MNIST["train"], "test": 2 * N_MNIST["test"]}
    mnist, svhn = store.arrays["mnist"], store.arrays["svhn"]
    assert mnist.shape == (len(idx), 1, 32, 32) and svhn.shape == (len(idx), 3, 32, 32)
    assert mnist.dtype == np.float16 and svhn.dtype == np.float16
    for a in (mnist, svhn):
        assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    for pool, rows in idx.groupby("pool"):
        m = meta[pool]
        np.testing.assert_array_equal(rows["label"], m["mnist_labels"][rows["mnist_index"]])
        np.testing.assert_array_equal(rows["label"], m["svhn_labels"][rows["svhn_index"]])
        r = rows["row"].to_numpy()
        # MNIST image i is the constant (i + 1) / 255 after the 28 -> 32 bilinear resize
        expected = (rows["mnist_index"].to_numpy() + 1) / 255.0
        got = mnist[r].astype(np.float64).reshape(len(r), -1)
        np.testing.assert_allclose(got, np.repeat(expected[:, None], 1024, 1), atol=1e-3)
        # SVHN pixels come from the paired image, channel-first
        exact = m["svhn_x"][3, 4, :, rows["svhn_index"].to_numpy()] / 255.0  # (P, 3)
        np.testing.assert_allclose(svhn[r][:, :, 3, 4].astype(np.float64), exact, atol=5e-4)
        assert (rows["subject"] == pool + "-mnist-" + rows["mnist_index"].astype(str)).all()
    assert idx["sample"].is_unique


def test_store_is_deterministic_by_seed_and_limit_applies(raw, tmp_path):
    mnist_dir, svhn_dir, _ = raw
    index = {}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        path = build_mnist_svhn_store(mnist_dir, svhn_dir, tmp_path / name, per_mnist=3, seed=seed, dtype="float32")
        index[name] = read_store(path).index
    assert index["a"].equals(index["b"])
    assert not index["a"][["mnist_index", "svhn_index"]].equals(index["c"][["mnist_index", "svhn_index"]])
    small = read_store(build_mnist_svhn_store(mnist_dir, svhn_dir, tmp_path / "small", per_mnist=1, seed=0, limit=10)).index
    assert small.groupby("pool")["mnist_index"].max().max() == 9 and len(small) == 20


def test_build_reports_missing_svhn(raw, tmp_path):
    mnist_dir, _, _ = raw
    with pytest.raises(DataFileError, match="train_32x32.mat not found"):
        build_mnist_svhn_store(mnist_dir, tmp_path, tmp_path / "out", per_mnist=1, seed=0)
    assert not (tmp_path / "out").exists()


def test_cli_command(raw, tmp_path):
    mnist_dir, svhn_dir, _ = raw
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    settings = json.dumps({"per_mnist": 1, "seed": 2})
    common = ["prepare-mnist-svhn", "--mnist-dir", str(mnist_dir), "--svhn-dir", str(svhn_dir)]
    args = parser.parse_args([*common, "--out", str(tmp_path / "s"), "--settings-json", settings])
    args.func(args)
    assert len(read_store(tmp_path / "s").index) == N_MNIST["train"] + N_MNIST["test"]
    bad = parser.parse_args([*common, "--out", str(tmp_path / "b"), "--settings-json", '{"per_mnsit": 1, "seed": 0}'])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['per_mnsit'\]; allowed: \['dtype', 'limit', 'per_mnist', 'seed'\]"):
        bad.func(bad)
    short = parser.parse_args([*common, "--out", str(tmp_path / "b"), "--settings-json", '{"seed": 0}'])
    with pytest.raises(ValueError, match=r"missing key\(s\) \['per_mnist'\]"):
        short.func(short)
    assert not (tmp_path / "b").exists()

"""MNIST readers, Two-View MNIST, splits, the packed store, downloads."""

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.data.download import download, verify
from mmssl.data.mnist import DataFileError, embedded_mnist, read_idx, read_mnist_dir, write_idx
from mmssl.data.splits import SplitSettings, make_splits, rows_of, subjects_table
from mmssl.data.store import read_store, write_store
from mmssl.data.two_view import build_two_view_store, make_views, rotate
from mmssl.types import SourceSpec


def tiny_mnist(folder, n_train=40, n_test=20, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for pool, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{pool}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{pool}-labels-idx1-ubyte{suffix}", np.arange(n) % 10)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_and_mnist_dir(tmp_path, gz):
    tiny_mnist(tmp_path, gz=gz)
    d = read_mnist_dir(tmp_path)
    assert d.images.shape == (60, 28, 28) and d.images.dtype == np.uint8
    assert list(d.labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert (d.pool == "train").sum() == 40 and (d.pool == "test").sum() == 20


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.*promises 125"):
        read_idx(bad)
    with gzip.open(tmp_path / "x.gz", "wb") as fh:
        fh.write(b"\x01\x02")
    with pytest.raises(DataFileError, match="bad magic"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\(\.gz\) not found in .*nothing"):
        read_mnist_dir(tmp_path / "nothing")


def test_embedded_digits_are_real_mnist():
    d = embedded_mnist()
    assert d.images.shape == (5000, 28, 28)
    assert np.bincount(d.labels).tolist() == [500] * 10
    # real digits: dark background, bright strokes, mean intensity ~ 33/255 like MNIST
    assert 25 < d.images.mean() < 45 and d.images[:, 0, :].max() == 0


def test_rotation_recovers_known_angle():
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 16, 16:28] = 1.0  # a horizontal bar to the right of the centre
    out = rotate(x, torch.tensor([math.pi / 2]))
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    # a quarter turn puts the bar on a vertical line through the centre
    assert xs.float().std() < 1.0 and ys.float().std() > 2.0


def test_views_follow_the_paper_and_are_reproducible():
    images = np.random.default_rng(1).integers(0, 256, (16, 28, 28)).astype(np.uint8)
    v1, v2, angles = make_views(images, seed=7)
    assert v1.shape == v2.shape == (16, 1, 32, 32)
    assert float(v1.min()) >= 0 and float(v1.max()) <= 1
    assert np.allclose(v2.flatten(1).min(1).values, 0) and np.allclose(v2.flatten(1).max(1).values, 1)
    assert np.all(np.abs(angles) <= math.pi / 4)
    w1, w2, a2 = make_views(images, seed=7)
    assert torch.equal(v1, w1) and torch.equal(v2, w2) and np.array_equal(angles, a2)
    assert not np.array_equal(angles, make_views(images, seed=8)[2])


def test_store_round_trip_and_atomic_failure(tmp_path):
    specs = [SourceSpec("a", 1, 16)]
    index = pd.DataFrame({"sample": ["s0", "s1"], "subject": ["s0", "s1"], "label": [0, 1]})
    write_store(tmp_path / "st", index, {"a": np.zeros((2, 1, 16, 16), np.float32)}, specs)
    st = read_store(tmp_path / "st")
    assert st.source_names == ["a"] and st.index["row"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="expected \\(2, 1, 16, 16\\)"):
        write_store(tmp_path / "bad", index, {"a": np.zeros((2, 1, 8, 8), np.float32)}, specs)
    assert not (tmp_path / "bad").exists()


def digits_index(n=500, pools=False):
    labels = np.arange(n) % 10
    pool = np.where(np.arange(n) < 0.8 * n, "train", "test") if pools else np.full(n, "train")
    ids = [f"d{i}" for i in range(n)]
    return pd.DataFrame({"row": np.arange(n), "sample": ids, "subject": ids, "label": labels, "pool": pool})


@pytest.mark.parametrize("pools", [False, True])
def test_kfold_splits_disjoint_stratified_and_fixed_test(pools):
    index = digits_index(pools=pools)
    folds = make_splits(subjects_table(index), SplitSettings(n_folds=5, seed=343))
    tests = [set(f.loc[f.split == "test", "subject"]) for f in folds]
    vals = [set(f.loc[f.split == "val", "subject"]) for f in folds]
    assert all(t == tests[0] for t in tests)  # the same test set in every fold
    assert len(tests[0]) == 100
    for k, f in enumerate(folds):
        parts = [set(f.loc[f.split == s, "subject"]) for s in ("train", "val", "test")]
        assert sum(map(len, parts)) == len(set.union(*parts)) == 500  # disjoint, complete
        assert (f.loc[f.split == "val", "label"].value_counts() == 8).all()  # stratified
    assert set.union(*vals) == set(index.subject) - tests[0]  # validation parts tile the rest
    assert sum(map(len, vals)) == 400


def test_subject_folds_with_holdout_never_leak():
    subjects = pd.DataFrame({"subject": [f"s{i}" for i in range(200)],
                             "label": ["HC"] * 120 + ["AD"] * 50 + ["other"] * 30})
    folds = make_splits(subjects, SplitSettings(n_folds=5, test="fold", holdout=20, seed=1))
    hold = [set(f.loc[f.split == "holdout", "subject"]) for f in folds]
    assert all(h == hold[0] for h in hold) and len(hold[0]) == 20
    tests = [set(f.loc[f.split == "test", "subject"]) for f in folds]
    assert set.union(*tests) == set(subjects.subject) - hold[0]
    for f in folds:
        counts = f.split.value_counts()
        assert 0.6 < counts["train"] / 180 < 0.8 and 0.1 < counts["val"] / 180 < 0.2
        assert f.loc[f.split == "holdout", "label"].value_counts()["HC"] == 12  # stratified


def test_samples_follow_their_subject():
    index = pd.DataFrame({"row": range(6), "sample": list("abcdef"), "subject": ["x", "x", "y", "y", "z", "z"],
                          "label": [0, 0, 1, 1, 0, 0]})
    split = pd.DataFrame({"subject": ["x", "y", "z"], "label": [0, 1, 0], "split": ["train", "test", "train"]})
    assert rows_of(index, split, "train").tolist() == [0, 1, 4, 5]
    assert rows_of(index, split, "test").tolist() == [2, 3]


def test_too_few_subjects_per_class_is_a_clear_error():
    subjects = pd.DataFrame({"subject": list("abcdefg"), "label": ["HC"] * 5 + ["AD"] * 2})
    with pytest.raises(ValueError, match="too few subjects per class for 5 stratified folds: AD: 2"):
        make_splits(subjects, SplitSettings(n_folds=5, test="fold"))


def test_two_view_store_from_embedded_subset(tmp_path):
    d = embedded_mnist()
    d.images, d.labels, d.pool = d.images[::50], d.labels[::50], d.pool[::50]
    st = read_store(build_two_view_store(d, tmp_path / "tv", seed=3, views="fixed"))
    assert st.source_names == ["view1", "view2"] and st.arrays["view1"].shape == (100, 1, 32, 32)
    assert st.index["label"].tolist() == d.labels.tolist()
    assert st.extra == {} and st.meta == {}  # fixed views: nothing to redraw from
    redraw = read_store(build_two_view_store(d, tmp_path / "rd", seed=3, views="redraw"))
    assert redraw.meta["views"] == "redraw" and redraw.extra["digit"].shape == (100, 1, 32, 32)
    # the stored (validation / test) views are the same draws whichever the mode
    assert np.array_equal(redraw.arrays["view1"], st.arrays["view1"]) and np.array_equal(redraw.arrays["view2"], st.arrays["view2"])


def test_redrawn_views_are_new_at_every_access_and_reproducible():
    from mmssl.data.two_view import redraw_views, to_unit_32

    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28)).astype(np.uint8)
    digit = to_unit_32(images)
    batch = {"view1": torch.zeros(8, 1, 32, 32), "view2": torch.zeros(8, 1, 32, 32), "digit": digit}
    gen = torch.Generator().manual_seed(5)
    first, second = redraw_views(batch, gen), redraw_views(batch, gen)
    assert set(first) == {"view1", "view2"} and "digit" in batch  # the caller's batch is left alone
    assert not torch.equal(first["view1"], second["view1"]) and not torch.equal(first["view2"], second["view2"])
    again = redraw_views(batch, torch.Generator().manual_seed(5))
    assert torch.equal(again["view1"], first["view1"]) and torch.equal(again["view2"], first["view2"])
    # the same transforms as the stored views: a fresh generator of the view seed gives them back
    v1, v2, _ = make_views(images, seed=5)
    assert torch.equal(again["view1"], v1) and torch.equal(again["view2"], v2)


def test_training_on_redrawn_views_sees_new_pairs_each_epoch(tmp_path, monkeypatch):
    from mmssl.train.loop import Trainer, train

    d = embedded_mnist()
    d.images, d.labels, d.pool = d.images[:96], d.labels[:96], np.array(["train"] * 96)
    store = build_two_view_store(d, tmp_path / "tv", seed=3, views="redraw")
    split = tmp_path / "fold0.tsv"
    ids = read_store(store).index["subject"]
    pd.DataFrame({"subject": ids, "label": d.labels, "split": ["train"] * 64 + ["val"] * 32}).to_csv(split, sep="\t", index=False)
    seen = []
    original = Trainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        losses = self.model.losses

        def record(xs, y=None, present=None, meta=None):
            if self.model.training:
                seen.append(xs["view1"].detach().clone())
            return losses(xs, y, present, meta)

        self.model.losses = record

    monkeypatch.setattr(Trainer, "__init__", init)
    status = train(store, split, "S", 0, tmp_path / "m" / "model.pt", tmp_path / "m" / "metrics.tsv",
                   {"epochs": 2, "batch_size": 32, "balanced": False}, {"width": 4, "latent": 8})
    assert status == "ok" and len(seen) == 4  # 2 epochs x 2 batches of 32 training rows
    stored = torch.from_numpy(np.array(read_store(store).arrays["view1"][:64]))
    # no training image is a stored view: every one was drawn anew
    for batch in seen:
        assert not any(torch.equal(row, ref) for row in batch for ref in stored)


def test_download_verifies_checksums_and_explains_offline(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"hello")
    import hashlib

    md5 = hashlib.md5(b"hello").hexdigest()
    sha = hashlib.sha256(b"hello").hexdigest()
    assert verify(src, f"md5:{md5}") and not verify(src, "md5:" + "0" * 32)
    assert verify(src, f"sha256:{sha}") and not verify(src, f"sha256:{sha[::-1]}")
    table = tmp_path / "urls.tsv"
    table.write_text("dataset\tfile\turl\tchecksum\n"
                     f"toy\tf.bin\t{src.as_uri()}\tsha256:{sha}\n"
                     f"toy\tg.bin\thttp://127.0.0.1:9/g.bin\tmd5:{md5}\n")
    with pytest.raises(RuntimeError, match=r"Put them there by hand.*:\n.*g\.bin"):
        download(table, "toy", tmp_path / "out")
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"hello"
    # the workflow passes the config keys that name the folder: the message quotes them
    with pytest.raises(RuntimeError, match=r"\(the folder of datasets\.mnist_svhn\.mnist_path,datasets\.two_view_mnist\.path\)"):
        download(table, "toy", tmp_path / "out", "datasets.mnist_svhn.mnist_path,datasets.two_view_mnist.path")
    with pytest.raises(ValueError, match="no files listed for dataset 'nope'"):
        download(table, "nope", tmp_path / "out")


def test_shipped_download_table_pins_sha256_for_mnist():
    import pandas as pd

    table = pd.read_csv(Path(__file__).parents[1] / "resources" / "downloads.tsv",
                        sep="\t", comment="#")
    mnist = table[table.dataset == "mnist"]
    assert set(mnist.file) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert mnist.checksum.str.fullmatch(r"sha256:[0-9a-f]{64}").all()
    # Mirrors of one file must agree on its checksum.
    assert (table.groupby("file").checksum.nunique() == 1).all()

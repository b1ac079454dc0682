"""Histogram landmarks use training subjects only; standardisation; the packed store."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mmssl.data.store import read_store
from mmssl.data.pack import pack_store
from mmssl.modalities import mask_column
from mmssl.data.standardize import (
    LeakageError,
    apply_standardization,
    landmarks_from_samples,
    load_landmarks,
    save_landmarks,
    train_landmarks,
)

SIZE = 64


def brain_mask() -> np.ndarray:
    """A 64³ ellipsoid standing in for the brain."""
    grid = np.indices((SIZE,) * 3) - (SIZE - 1) / 2
    return (grid[0] / 22) ** 2 + (grid[1] / 26) ** 2 + (grid[2] / 20) ** 2 <= 1


def volume(rng: np.random.Generator, scale: float, offset: float) -> np.ndarray:
    """Two tissue classes (a 'white matter' core, 'grey matter' rim) with noise, 0 outside the brain."""
    mask = brain_mask()
    grid = np.indices((SIZE,) * 3) - (SIZE - 1) / 2
    core = (grid[0] / 14) ** 2 + (grid[1] / 17) ** 2 + (grid[2] / 13) ** 2 <= 1
    data = np.where(core, 0.8, 0.5) + rng.normal(0, 0.05, mask.shape)
    return np.where(mask, data * scale + offset, 0).astype(np.float32)


def save(array: np.ndarray, path) -> str:
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0])), path)
    return str(path)


@pytest.fixture()
def dataset(tmp_path):
    """6 subjects (2 samples each, differing intensity scales), split table of one fold."""
    rng = np.random.default_rng(0)
    mask_path = save(brain_mask().astype(np.float32), tmp_path / "mask.nii.gz")
    splits = pd.DataFrame(
        {
            "subject": [f"S{i}" for i in range(6)],
            "label": [0, 1, 0, 1, 0, 1],
            "split": ["train", "train", "train", "val", "test", "holdout"],
        }
    )
    rows = []
    for i in range(6):
        for k in range(2):
            scale, offset = rng.uniform(50, 300), rng.uniform(0, 40)
            t1 = save(volume(rng, scale, offset), tmp_path / f"S{i}_{k}_t1.nii.gz")
            falff = save(volume(rng, 0.5, 0.1), tmp_path / f"S{i}_{k}_falff.nii.gz")
            rows.append({"sample": f"S{i}_{k}", "subject": f"S{i}", "T1w": t1, "fALFF": falff, "mask_T1w": mask_path, "mask_fALFF": mask_path, "age": 70 + i})
    return pd.DataFrame(rows), splits


def test_training_on_a_non_training_subject_is_refused(dataset):
    pairs, splits = dataset
    images = {"S0": [pairs.T1w[0]], "S4": [pairs.T1w[8]]}
    with pytest.raises(LeakageError, match=r"S4 \(test\)"):
        train_landmarks(images, splits)
    with pytest.raises(LeakageError, match="S9 \\(not in split table\\)"):
        train_landmarks({"S9": [pairs.T1w[0]]}, splits)


def test_landmarks_depend_only_on_training_subjects(dataset, tmp_path):
    pairs, splits = dataset
    before = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    # rewrite the images of the val, test and hold-out subjects (S3, S4, S5) with wild intensities
    rng = np.random.default_rng(1)
    for path in pairs.loc[pairs.subject.isin(["S3", "S4", "S5"]), "T1w"]:
        save(volume(rng, 5000.0, 900.0), path)
    after = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    assert before.tobytes() == after.tobytes()
    # ... whereas changing one training subject's image changes them
    save(volume(rng, 5000.0, 900.0), pairs.T1w[0])
    changed = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    assert not np.allclose(changed, before)


def test_landmarks_do_not_depend_on_subject_order(dataset):
    pairs, splits = dataset
    forward = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    backward = landmarks_from_samples(pairs.iloc[::-1].reset_index(drop=True), splits, "T1w", mask_column("T1w"))
    assert forward.tobytes() == backward.tobytes()


def test_landmarks_file_round_trip(dataset, tmp_path):
    pairs, splits = dataset
    landmarks = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    path = save_landmarks(landmarks, tmp_path / "fold-0_T1w_landmarks.npy")
    assert path.name == "fold-0_T1w_landmarks.npy"
    np.testing.assert_array_equal(load_landmarks(path), landmarks)
    np.save(tmp_path / "bad.npy", landmarks[::-1])
    with pytest.raises(ValueError, match="bad.npy"):
        load_landmarks(tmp_path / "bad.npy")


def test_standardised_volume_is_z_scored_inside_and_zero_outside(dataset):
    pairs, splits = dataset
    landmarks = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    mask = brain_mask()
    raw = np.asarray(nib.load(pairs.T1w[4]).dataobj)
    raw = np.where(mask, raw, 7.0)  # a non-zero background must not leak through
    out = apply_standardization(raw, mask, landmarks)
    assert out.dtype == np.float32
    assert abs(out[mask].mean()) < 1e-4
    assert out[mask].std(ddof=1) == pytest.approx(1.0, abs=1e-4)
    assert np.all(out[~mask] == 0.0)


def test_standardisation_removes_a_linear_intensity_change(dataset):
    """The same anatomy acquired with another gain and offset maps to the same volume
    (the histogram mapping is piecewise linear between percentiles)."""
    pairs, splits = dataset
    landmarks = landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w"))
    mask = brain_mask()
    a = volume(np.random.default_rng(5), 100.0, 10.0)
    b = np.where(mask, 3.0 * a + 50.0, 0)
    np.testing.assert_allclose(apply_standardization(a, mask, landmarks), apply_standardization(b, mask, landmarks), atol=1e-3)
    # and it is not a plain z-score: the landmarks shape the histogram
    plain = np.where(mask, (a - a[mask].mean()) / a[mask].std(ddof=1), 0)
    assert np.abs(apply_standardization(a, mask, landmarks) - plain).max() > 1e-2


def test_pack_store_holds_float16_standardised_volumes(dataset, tmp_path):
    pairs, splits = dataset
    landmarks = {"T1w": landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w")), "fALFF": landmarks_from_samples(pairs, splits, "fALFF", mask_column("fALFF"))}
    out = pack_store(pairs, splits, landmarks, tmp_path / "store", ["T1w", "fALFF"], dtype="float16", size=SIZE)
    store = read_store(out)
    assert store.source_names == ["T1w", "fALFF"]
    assert store.index["has_T1w"].tolist() == store.index["has_fALFF"].tolist() == [1] * 12 and not store.has_missing
    for name in ("T1w", "fALFF"):
        assert store.arrays[name].shape == (12, 1, SIZE, SIZE, SIZE)
        assert store.arrays[name].dtype == np.float16
    assert list(store.index["sample"]) == list(pairs["sample"])
    assert list(store.index["label"]) == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]  # from the split table
    assert list(store.index["age"]) == list(pairs["age"])
    mask = brain_mask()
    expected = apply_standardization(np.asarray(nib.load(pairs.fALFF[5]).dataobj), mask, landmarks["fALFF"])
    np.testing.assert_allclose(store.arrays["fALFF"][5, 0].astype(np.float32), expected, atol=5e-3, rtol=1e-3)
    assert not (tmp_path / ".store.scratch").exists()


def test_pack_store_refuses_subjects_missing_from_the_split_table(dataset, tmp_path):
    pairs, splits = dataset
    landmarks = {"T1w": np.linspace(0, 100, 13), "fALFF": np.linspace(0, 100, 13)}
    with pytest.raises(ValueError, match="S5"):
        pack_store(pairs, splits[splits.subject != "S5"], landmarks, tmp_path / "store", ["T1w", "fALFF"], dtype="float16", size=SIZE)
    assert not (tmp_path / "store").exists()
    with pytest.raises(ValueError, match="no landmarks for source 'T2w'"):
        pack_store(pairs.assign(T2w=pairs["T1w"], mask_T2w=pairs["mask_T1w"]), splits, landmarks, tmp_path / "store", ["T1w", "T2w"], dtype="float16", size=SIZE)


def test_pack_with_a_missing_source_writes_zeros_and_standardises_the_present(dataset, tmp_path):
    """Samples lacking fALFF (S1's both, S4's second) or T1w (S2's first) get zeros and
    has_<source> = 0 there; every present volume is standardised as in a complete store;
    landmarks come from the training samples that have the source."""
    pairs, splits = dataset
    pairs = pairs.copy()
    pairs.loc[pairs.subject == "S1", "fALFF"] = ""
    pairs.loc[pairs["sample"] == "S4_1", "fALFF"] = np.nan  # NaN (a TSV's empty cell) counts as absent too
    pairs.loc[pairs["sample"] == "S2_0", "T1w"] = ""
    landmarks = {"T1w": landmarks_from_samples(pairs, splits, "T1w", mask_column("T1w")), "fALFF": landmarks_from_samples(pairs, splits, "fALFF", mask_column("fALFF"))}
    # the fALFF landmarks use S0 and S2 only: S1, a training subject, has none
    expected = train_landmarks({s: list(pairs.loc[pairs.subject == s, "fALFF"]) for s in ("S0", "S2")}, splits,
                               {s: list(pairs.loc[pairs.subject == s, "mask_fALFF"]) for s in ("S0", "S2")})
    assert landmarks["fALFF"].tobytes() == expected.tobytes()
    store = read_store(pack_store(pairs, splits, landmarks, tmp_path / "store", ["T1w", "fALFF"], dtype="float16", size=SIZE))
    has_falff = store.index["has_fALFF"].to_numpy().astype(bool)
    assert list(np.flatnonzero(~has_falff)) == [2, 3, 9] and list(np.flatnonzero(~store.present("T1w"))) == [4]
    assert not np.any(store.arrays["fALFF"][~has_falff]) and not np.any(store.arrays["T1w"][4])
    mask = brain_mask()
    for row in (0, 5, 8):  # present volumes: standardised, z-scored in the mask
        volume = store.arrays["fALFF"][row, 0].astype(np.float32)
        expected = apply_standardization(np.asarray(nib.load(pairs.fALFF[row]).dataobj), mask, landmarks["fALFF"])
        np.testing.assert_allclose(volume, expected, atol=5e-3, rtol=1e-3)
        assert abs(volume[mask].mean()) < 1e-2 and volume[mask].std() == pytest.approx(1.0, abs=1e-2)
    assert store.has_missing and store.complete.sum() == 8


def test_landmarks_of_a_source_no_training_subject_has_are_refused(dataset):
    pairs, splits = dataset
    gone = pairs.assign(fALFF=np.where(pairs.subject.isin(["S0", "S1", "S2"]), "", pairs.fALFF))
    with pytest.raises(ValueError, match="no training subject of this fold has source 'fALFF'"):
        landmarks_from_samples(gone, splits, "fALFF", mask_column("fALFF"))


def test_landmarks_do_not_depend_on_the_order_within_a_subject(dataset):
    """Each subject's (image, mask) pairs are sorted before TorchIO sums them, so any
    permutation of a subject's list gives bit-identical landmarks."""
    pairs, splits = dataset
    train = pairs[pairs.subject.isin(["S0", "S1", "S2"])]
    images = {s: list(g["T1w"]) for s, g in train.groupby("subject")}
    masks = {s: list(g["mask_T1w"]) for s, g in train.groupby("subject")}
    assert max(map(len, images.values())) > 1  # the permutation below really permutes
    forward = train_landmarks(images, splits, masks)
    backward = train_landmarks({s: v[::-1] for s, v in reversed(images.items())}, splits,
                               {s: v[::-1] for s, v in reversed(masks.items())})
    assert forward.tobytes() == backward.tobytes()

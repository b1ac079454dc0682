"""The known-answer MRI benchmark (dataset kind synthetic_mri): the generative model does what
its docstring says, the store is what training reads, and the workflow plans it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmssl.data.known_mri import (ATROPHY_REGION, FALFF_REGION, T1_SPECIFIC_REGION, T2_SPECIFIC_REGION,
                                  build_known_mri_store, generate, region_mask)
from mmssl.data.store import read_store
from mmssl.preprocess.spatial import GridSettings, mni_grid

MODEL = dict(atrophy=0.6, falff_drop=0.6, specific=0.2, label_noise=1.0, noise=0.2)


@pytest.fixture(scope="module")
def data():
    return generate(240, 3, 32, **MODEL)


def region_means(arrays, name, spec):
    grid = mni_grid(GridSettings(voxel_mm=6.0, size=32))
    inside = region_mask(grid.affine, grid.shape, *spec) > 0.5
    return arrays[name][:, 0][:, inside].mean(1)


def test_the_label_depends_on_the_shared_factor_alone_and_the_groups_overlap(data):
    index, _ = data
    y = (index["label"] == "AD").to_numpy()
    assert 0.35 < y.mean() < 0.65
    auc = roc_auc_score(y, index["shared"])
    assert 0.72 < auc < 0.9  # even the true factor cannot reach 1 (label noise 1: ~0.8)
    for nuisance in ("t1_specific", "falff_specific", "head_scale"):
        assert abs(roc_auc_score(y, index[nuisance]) - 0.5) < 0.12, nuisance
    # age: metadata for y-aware criteria, correlated ~0.5 with the disease factor
    assert 0.35 < np.corrcoef(index["age"], index["shared"])[0, 1] < 0.65


def test_the_shared_factor_is_expressed_in_both_modalities_and_the_specific_ones_in_one(data):
    index, arrays = data
    t1_region = region_means(arrays, "T1w", ATROPHY_REGION)
    falff_region = region_means(arrays, "fALFF", FALFF_REGION)
    assert np.corrcoef(t1_region, index["shared"])[0, 1] < -0.5  # atrophy: lower T1w intensity
    assert np.corrcoef(falff_region, index["shared"])[0, 1] < -0.5  # lower fALFF in the linked region
    frontal = region_means(arrays, "T1w", T1_SPECIFIC_REGION)
    assert np.corrcoef(frontal, index["t1_specific"])[0, 1] > 0.5
    assert abs(np.corrcoef(frontal, index["shared"])[0, 1]) < 0.2  # the specific region is not the disease's
    # fALFF carries nothing of the T1w-specific factor
    assert abs(np.corrcoef(falff_region, index["t1_specific"])[0, 1]) < 0.2


def test_a_third_modality_shares_the_disease_and_changes_nothing_else(data):
    """T2w: brighter medial temporal region with the disease, its own occipital factor; the
    T1w and fALFF volumes are those of the two-source benchmark, bit for bit."""
    index2, arrays2 = data
    index, arrays = generate(240, 3, 32, **MODEL, sources=("T1w", "fALFF", "T2w"))
    assert list(arrays) == ["T1w", "fALFF", "T2w"]
    assert np.array_equal(arrays["T1w"], arrays2["T1w"]) and np.array_equal(arrays["fALFF"], arrays2["fALFF"])
    t2_region = region_means(arrays, "T2w", ATROPHY_REGION)
    assert np.corrcoef(t2_region, index["shared"])[0, 1] > 0.5  # fluid where tissue was lost
    occipital = region_means(arrays, "T2w", T2_SPECIFIC_REGION)
    assert np.corrcoef(occipital, index["t2_specific"])[0, 1] > 0.5
    assert abs(np.corrcoef(region_means(arrays, "T1w", T1_SPECIFIC_REGION), index["t2_specific"])[0, 1]) < 0.2


def test_missing_sources_are_zeros_marked_in_the_index(data, tmp_path):
    _, complete = data
    index, arrays = generate(240, 3, 32, **MODEL, sources=("T1w", "fALFF", "T2w"), missing={"fALFF": 0.5, "T2w": 0.3})
    has = {s: index[f"has_{s}"].to_numpy().astype(bool) for s in arrays}
    assert 0.35 < 1 - has["fALFF"].mean() < 0.65 and 0.18 < 1 - has["T2w"].mean() < 0.42 and has["T1w"].all()
    assert not np.any(arrays["fALFF"][~has["fALFF"]]) and np.array_equal(arrays["fALFF"][has["fALFF"]],
                                                                           complete["fALFF"][has["fALFF"]])
    # missing at random: the label is unrelated to what is missing
    y = (index["label"] == "AD").to_numpy()
    assert abs(y[has["fALFF"]].mean() - y[~has["fALFF"]].mean()) < 0.2
    # nobody is left with nothing, even when every source is likely missing
    index, _ = generate(40, 3, 32, **MODEL, missing={"T1w": 0.9, "fALFF": 0.9})
    assert (index[["has_T1w", "has_fALFF"]].sum(axis=1) >= 1).all()
    store = read_store(build_known_mri_store(tmp_path / "m", n_subjects=30, seed=1, size=32, **MODEL,
                                             sources=["T1w", "T2w"], missing={"T2w": 0.5}))
    assert store.source_names == ["T1w", "T2w"] and store.has_missing and store.present("T1w").all()
    with pytest.raises(ValueError, match="missing may name only them"):
        generate(30, 3, 32, **MODEL, missing={"FLAIR": 0.5})


def test_volumes_are_z_normalised_in_the_brain_and_reproducible(data, tmp_path):
    index, arrays = data
    for name in ("T1w", "fALFF"):
        volume = arrays[name][0, 0]
        inside = volume != 0
        assert abs(float(volume[inside].mean())) < 1e-3 and abs(float(volume[inside].std()) - 1) < 1e-3
    again, _ = generate(240, 3, 32, **MODEL)
    assert again.equals(index)
    store = read_store(build_known_mri_store(tmp_path / "store", n_subjects=30, seed=1, size=32, **MODEL))
    assert store.source_names == ["T1w", "fALFF"] and store.arrays["T1w"].shape == (30, 1, 32, 32, 32)
    assert store.arrays["T1w"].dtype == np.float16 and set(store.index["label"]) <= {"AD", "HC"}

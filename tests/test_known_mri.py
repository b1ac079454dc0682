"""The known-answer MRI benchmark (dataset kind synthetic_mri): the generative model does what
its docstring says, the store is what training reads, and the workflow plans it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmssl.data.known_mri import (ATROPHY_REGION, FALFF_REGION, T1_SPECIFIC_REGION, build_known_mri_store, generate,
                                  region_mask)
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

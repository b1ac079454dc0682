"""The known-answer MRI benchmark (dataset kind synthetic_mri): the generative model does what
its docstring says, the store is what training reads, and the workflow plans it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmssl.config import validate
from mmssl.data.known_mri import (ATROPHY_REGION, FALFF_REGION, FALFF_SPECIFIC_REGION, T1_SPECIFIC_REGION,
                                  T2_SPECIFIC_REGION, build_known_mri_store, draw_factors, factor_columns, generate,
                                  region_mask)
from mmssl.data.store import read_store
from mmssl.preprocess.spatial import GridSettings, mni_grid

# the keys the config schema fills in for a synthetic_mri dataset that leaves them out
FILLED = validate({"datasets": {"k": {"kind": "synthetic_mri"}}})["datasets"]["k"]
MODEL = dict(atrophy=0.6, falff_drop=0.6, specific=0.2, label_noise=1.0, noise=0.2,
             **{k: FILLED[k] for k in ("sources", "t2_gain", "missing")})


def model(**given):
    """MODEL with the keys ``given`` replaced."""
    return {**MODEL, **given}


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
    for other in factor_columns(index.columns)[1:]:
        assert abs(roc_auc_score(y, index[other]) - 0.5) < 0.12, other
    # exactly the model's threshold of s + label_noise e, from the same seeded draws
    f = draw_factors(240, 3)
    assert np.array_equal(y, f["shared"] + MODEL["label_noise"] * f["label_noise"] > 0)
    # age: metadata for y-aware criteria, correlated ~0.5 with the disease factor
    assert 0.35 < np.corrcoef(index["age"], index["shared"])[0, 1] < 0.65


def test_the_shared_factor_is_expressed_in_both_modalities_and_the_specific_ones_in_one(data):
    index, arrays = data
    t1_region = region_means(arrays, "T1w", ATROPHY_REGION)
    falff_region = region_means(arrays, "fALFF", FALFF_REGION)
    assert np.corrcoef(t1_region, index["shared"])[0, 1] < -0.5  # atrophy: lower T1w intensity
    assert np.corrcoef(falff_region, index["shared"])[0, 1] < -0.5  # lower fALFF in the linked region
    frontal = region_means(arrays, "T1w", T1_SPECIFIC_REGION)
    assert np.corrcoef(frontal, index["private_T1w"])[0, 1] > 0.5
    assert abs(np.corrcoef(frontal, index["shared"])[0, 1]) < 0.2  # the specific region is not the disease's
    # fALFF carries nothing of the T1w-specific factor
    assert abs(np.corrcoef(falff_region, index["private_T1w"])[0, 1]) < 0.2


def test_a_third_modality_shares_the_disease_and_changes_nothing_else(data):
    """T2w: brighter medial temporal region with the disease, its own occipital factor; the
    T1w and fALFF volumes are those of the two-source benchmark, bit for bit."""
    index2, arrays2 = data
    index, arrays = generate(240, 3, 32, **model(sources=("T1w", "fALFF", "T2w")))
    assert list(arrays) == ["T1w", "fALFF", "T2w"]
    assert np.array_equal(arrays["T1w"], arrays2["T1w"]) and np.array_equal(arrays["fALFF"], arrays2["fALFF"])
    t2_region = region_means(arrays, "T2w", ATROPHY_REGION)
    assert np.corrcoef(t2_region, index["shared"])[0, 1] > 0.5  # fluid where tissue was lost
    occipital = region_means(arrays, "T2w", T2_SPECIFIC_REGION)
    assert np.corrcoef(occipital, index["private_T2w"])[0, 1] > 0.5
    assert abs(np.corrcoef(region_means(arrays, "T1w", T1_SPECIFIC_REGION), index["private_T2w"])[0, 1]) < 0.2


def test_missing_sources_are_zeros_marked_in_the_index(data, tmp_path):
    _, complete = data
    index, arrays = generate(240, 3, 32, **model(sources=("T1w", "fALFF", "T2w"), missing={"fALFF": 0.5, "T2w": 0.3}))
    has = {s: index[f"has_{s}"].to_numpy().astype(bool) for s in arrays}
    assert 0.35 < 1 - has["fALFF"].mean() < 0.65 and 0.18 < 1 - has["T2w"].mean() < 0.42 and has["T1w"].all()
    assert not np.any(arrays["fALFF"][~has["fALFF"]]) and np.array_equal(arrays["fALFF"][has["fALFF"]],
                                                                           complete["fALFF"][has["fALFF"]])
    # missing at random: the label is unrelated to what is missing
    y = (index["label"] == "AD").to_numpy()
    assert abs(y[has["fALFF"]].mean() - y[~has["fALFF"]].mean()) < 0.2
    # nobody is left with nothing, even when every source is likely missing
    index, _ = generate(40, 3, 32, **model(missing={"T1w": 0.9, "fALFF": 0.9}))
    assert (index[["has_T1w", "has_fALFF"]].sum(axis=1) >= 1).all()
    store = read_store(build_known_mri_store(tmp_path / "m", n_subjects=30, seed=1, size=32,
                                             **model(sources=["T1w", "T2w"], missing={"T2w": 0.5})))
    assert store.source_names == ["T1w", "T2w"] and store.has_missing and store.present("T1w").all()
    with pytest.raises(ValueError, match="missing may name only them"):
        generate(30, 3, 32, **model(missing={"FLAIR": 0.5}))


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
    # the generating factors reach the store's index, where `mmssl recovery` reads them
    assert factor_columns(store.index.columns) == ["shared", "private_T1w", "private_fALFF", "nuisance_head",
                                                   "nuisance_bias_T1w", "nuisance_bias_fALFF"]
    assert store.arrays["T1w"].dtype == np.float16 and set(store.index["label"]) <= {"AD", "HC"}


def test_the_factors_are_drawn_independently():
    f = draw_factors(4000, 0)
    r = np.corrcoef(np.array(list(f.values())))
    assert len(f) == 9 and np.abs(r - np.eye(len(f))).max() < 0.06  # 4000 draws: sd of r ~0.016


def test_the_index_holds_every_factor_of_the_listed_modalities(data):
    index, _ = data
    assert factor_columns(index.columns) == ["shared", "private_T1w", "private_fALFF", "nuisance_head",
                                             "nuisance_bias_T1w", "nuisance_bias_fALFF"]
    f = draw_factors(240, 3)
    for c in factor_columns(index.columns):
        assert np.allclose(index[c], f[c], atol=1e-5), c
    r = np.corrcoef(index[factor_columns(index.columns)].to_numpy().T)
    assert np.abs(r - np.eye(len(r))).max() < 0.2  # 240 subjects: sd of r ~0.065


def explained(y, index, factors):
    """Share of the variance of ``y`` each factor explains on its own (squared correlation)."""
    return {c: np.corrcoef(y, index[c])[0, 1] ** 2 for c in factors}


def test_the_planted_regions_are_driven_by_their_factors_more_than_by_head_size(data):
    """Head size is a nuisance common to both modalities (one head); the disease region of
    T1w must follow s more than it: the review found head size driving it more (r -0.76 vs
    -0.67) with a 4 % head-size sd."""
    index, arrays = data
    factors = factor_columns(index.columns)
    for source, region, factor in (("T1w", ATROPHY_REGION, "shared"), ("fALFF", FALFF_REGION, "shared"),
                                   ("T1w", T1_SPECIFIC_REGION, "private_T1w"),
                                   ("fALFF", FALFF_SPECIFIC_REGION, "private_fALFF")):
        share = explained(region_means(arrays, source, region), index, factors)
        assert share[factor] > 0.5, (source, factor, share)
        assert share[factor] > 2 * share["nuisance_head"], (source, factor, share)
        others = [c for c in factors if c not in (factor, "nuisance_head") and not c.startswith("nuisance_bias")]
        assert max(share[c] for c in others) < 0.05, (source, factor, share)


def test_the_bias_field_survives_the_z_normalisation(data):
    """A global gain would be divided out exactly; the bias field changes the contrast
    between the top and the bottom of the brain, which the normalised volume keeps."""
    index, arrays = data
    grid = mni_grid(GridSettings(voxel_mm=6.0, size=32))
    z_mm = np.arange(32) * grid.affine[2, 2] + grid.affine[2, 3]
    for source in ("T1w", "fALFF"):
        v = arrays[source][:, 0]
        inside = v[0] != 0
        top, bottom = inside & (z_mm > 20)[None, None, :], inside & (z_mm < -10)[None, None, :]
        contrast = v[:, top].mean(1) - v[:, bottom].mean(1)
        other = "fALFF" if source == "T1w" else "T1w"
        assert np.corrcoef(contrast, index[f"nuisance_bias_{source}"])[0, 1] > 0.6, source
        assert abs(np.corrcoef(contrast, index[f"nuisance_bias_{other}"])[0, 1]) < 0.2, source


def test_the_generator_reads_exactly_the_schemas_synthetic_mri_keys():
    """The rule passes generator_keys() of the dataset's config (no list of keys of its own),
    and each is a schema key of the synthetic_mri branch: a new generator argument without a
    schema entry (its default's home), or a schema key nothing reads, fails here."""
    from mmssl.data.known_mri import generator_keys
    from mmssl.schema import load_schema

    branch = next(b["then"]["properties"] for b in load_schema()["$defs"]["dataset"]["allOf"]
                  if b["if"]["properties"]["kind"].get("const") == "synthetic_mri")
    workflow_keys = {"kind", "methods", "folds", "splits", "model", "train", "probe", "similarity", "classes", "maps"}
    assert set(generator_keys()) == set(branch) - workflow_keys
    assert generator_keys()[:2] == ["n_subjects", "seed"]  # keyword order: the JSON argument's, unchanged


def test_the_maps_grid_of_the_known_answer_kind_is_the_generators():
    """The grid the maps are drawn on (the kind registry) is the one the volumes were made on."""
    from mmssl.data.kinds import KINDS

    for size in (32, 64):
        grid = KINDS["synthetic_mri"].grid({"size": size})
        assert grid["size"] == size and grid["voxel_mm"] * size == 192.0
        expected = mni_grid(GridSettings(size=size, voxel_mm=192.0 / size))
        assert np.allclose(mni_grid(GridSettings(**grid)).affine, expected.affine)

"""Brain maps (mmssl.maps): Integrated Gradients is complete and exact where it can be, the
decision is the probe's (its tuned elastic net, the same test ROC AUC), the maps land on the MNI grid, a
sample lacking a source is never read, link maps equal the training critic's scores, a
supervised encoder's attribution falls in the region the known-answer benchmark planted,
and the workflow plans the maps for MRI datasets only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from mmssl.data.known_mri import (ATROPHY_REGION, FALFF_REGION, FALFF_SPECIFIC_REGION, T1_SPECIFIC_REGION,
                                  build_known_mri_store, region_mask)
from mmssl.data.splits import SplitSettings, make_splits, read_split, subjects_table
from mmssl.data.store import read_store, write_store
from mmssl.modalities import present_column
from mmssl.evaluate.commands import run_probe
from mmssl.evaluate.embed import embed
from mmssl.evaluate.probe import TunedProbeSettings, refit_tuned
from mmssl.io import write_tsv
from mmssl.maps.attribution import Decision, VolumeLogit, contrast_maps, fold_decision, integrated_gradients
from mmssl.maps.links import critic_scores, has_links, upsample_locations
from mmssl.maps.pipeline import (NoMap, decision_maps, fwe_threshold, permutation_p, permuted_labels, probe_choice,
                                 run_maps)
from mmssl.maps.settings import MapsSettings
from mmssl.maps.volumes import map_grid
from mmssl.objectives import build_method
from mmssl.objectives.base import ModelSettings
from mmssl.preprocess.spatial import GridSettings, mni_grid
from mmssl.objectives.model_file import model_meta, save_model
from mmssl.train.loop import train
from mmssl.types import SourceSpec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dryrun import job_counts  # noqa: E402

GRID = {"voxel_mm": 6.0, "size": 32}  # the 32^3 known-answer benchmark: 192 mm / 32
CLASSES = ["HC", "AD"]
PROBE = {"n_trials": 4}  # the probe's binary settings: a short study, the schema's seed and max_iter
TINY = {"width": 4, "latent": 16}
# a strong, clean disease effect: the planted regions should be found by a few epochs (the
# label is the shared factor's sign, label_noise 0: on the v2 generator, whose head size and
# bias field add variance, label_noise 0.3 left the supervised T1w decision at test AUC 0.69)
NO_NULL = {"permutations": 0}  # tests of other things skip the permutation null
KNOWN = dict(n_subjects=120, seed=0, size=32, atrophy=0.9, falff_drop=0.9, specific=0.2, label_noise=0.0, noise=0.2,
             sources=["T1w", "fALFF"], t2_gain=0.6, missing={})


def attribution_of(folder: Path, source: str) -> dict[str, Path]:
    stem = folder / f"{source}_desc-attribution_map"
    return {"nii": Path(f"{stem}.nii.gz"), "json": Path(f"{stem}.json"), "png": Path(f"{stem}.png")}


def probe_of(latents: Path) -> Path:
    """The probe's table of ``latents`` (`mmssl probe`, binary, HC vs AD), beside them."""
    out = latents.with_name(latents.stem + "_probe.tsv")
    if not out.exists():
        run_probe(latents, out, {**PROBE, "classes": CLASSES}, "binary")
    return out


def untrained(method: str, store_dir: Path, path: Path) -> Path:
    """model.pt of an untrained ``method`` on the store's sources (as `mmssl train` writes it)."""
    store = read_store(store_dir)
    settings = ModelSettings.from_config(TINY)
    model = build_method(method, store.sources, settings)
    meta = model_meta(method, 0, "ok", 0, [asdict(s) for s in store.sources], asdict(settings), {}, "cpu")
    meta["selected_epoch"] = 0
    return save_model(path, meta, model.state_dict())


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """The known-answer store, fold 0 of 4 folds, and an untrained (random) model's latents."""
    root = tmp_path_factory.mktemp("known")
    store = build_known_mri_store(root / "store", **KNOWN)
    folds = SplitSettings.from_config({"n_folds": 4, "test": "fold"})
    split = make_splits(subjects_table(read_store(store).index), folds)[0]
    write_tsv(split, root / "split.tsv")
    model = untrained("random", store, root / "random" / "model.pt")
    embed(store, root / "split.tsv", model, root / "random" / "latents.npz", device="cpu")
    return root


# ---- Integrated Gradients and the decision -------------------------------------------

def test_integrated_gradients_of_a_linear_function_is_input_times_weight():
    """f(x) = sum(w * x): every path gradient is w, so the attribution is exactly w * x."""
    w = torch.randn(1, 5, 6)

    class Linear(nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1)

    x = torch.randn(3, 1, 5, 6)
    attr, delta = integrated_gradients(Linear(), x, steps=8, batch_size=16)
    assert torch.allclose(attr, x * w, atol=1e-5)
    assert delta.abs().max() < 1e-4


def test_integrated_gradients_is_complete_through_an_encoder():
    """sum of attributions = logit(x) - logit(0), up to the quadrature error."""
    torch.manual_seed(1)
    model = build_method("random", [SourceSpec("T1w", 1, 16, 3)], ModelSettings.from_config(TINY))
    forward = VolumeLogit(model.encoders["T1w"], Decision(weight=np.random.default_rng(0).standard_normal(16), bias=0.3,
                                                          fit_auc=0.5))
    x = torch.randn(2, 1, 16, 16, 16)
    attr, _ = integrated_gradients(forward, x, steps=64, batch_size=64)
    with torch.no_grad():
        gap = forward(x) - forward(torch.zeros_like(x))
    total = attr.flatten(1).sum(1)
    assert torch.allclose(total, gap, rtol=0.02, atol=1e-3), (total, gap)
    assert gap.abs().min() > 1e-3  # not a vacuous 0 = 0


def test_the_batched_maps_of_many_decisions_are_captums():
    """contrast_maps (one forward pass per path point, one batched vector-Jacobian product per
    group of decisions) gives, for every decision, the contrast of Captum's per-volume IG."""
    torch.manual_seed(2)
    model = build_method("random", [SourceSpec("T1w", 1, 16, 3)], ModelSettings.from_config(TINY))
    encoder = model.encoders["T1w"]
    rng = np.random.default_rng(0)
    weights, coef = rng.standard_normal((5, 16)), rng.standard_normal((5, 3))
    x = torch.randn(3, 1, 16, 16, 16)
    # batch_size 8 with 4 steps: 2 subjects per chunk, the decisions in groups of 16 * 8 // 8 = 16 (and of 4 below)
    for batch_size in (8, 1):
        got = contrast_maps(encoder, weights, 0.3, coef, x.numpy(), steps=4, batch_size=batch_size,
                            device=torch.device("cpu"), keep_subjects=True)
        for j in range(5):
            attr, _ = integrated_gradients(VolumeLogit(encoder, Decision(weights[j], 0.3, 0.5)), x, steps=4, batch_size=8)
            expected = np.einsum("i,i...->...", coef[j], attr.sum(1).numpy())
            assert np.allclose(got.maps[j], expected, atol=1e-5 * np.abs(expected).max()), j
            if j == 0:
                assert np.allclose(got.subjects, attr.sum(1).numpy(), atol=1e-5 * float(attr.abs().max()))
                assert np.allclose(got.totals, attr.flatten(1).sum(1).numpy(), rtol=1e-4, atol=1e-6)


def test_the_family_wise_threshold_and_the_peaks_p():
    """p = (1 + #{null max >= |v|}) / (N + 1); |v| above the threshold has p <= alpha."""
    null_max = np.arange(1.0, 40.0)  # N = 39: 1 .. 39
    assert fwe_threshold(null_max, 0.05) == 38.0  # the second largest: above it, p <= 2 / 40
    assert permutation_p(38.5, null_max) == 2 / 40 and permutation_p(38.0, null_max) == 3 / 40
    assert permutation_p(-40.0, null_max) == 1 / 40
    assert fwe_threshold(np.arange(1.0, 20.0), 0.05) == 19.0  # N = 19: only above every null max
    assert fwe_threshold(np.arange(1.0, 10.0), 0.05) == np.inf  # N = 9 cannot reach p <= 0.05
    fit, test = np.arange(30) < 10, np.arange(20) < 8
    first, again = permuted_labels(fit, test, 5, seed=3), permuted_labels(fit, test, 5, seed=3)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, again))  # seeded
    pooled = [np.concatenate(p) for p in first]
    assert all(p.sum() == 18 for p in pooled) and not all((p == np.concatenate([fit, test])).all() for p in pooled)


def noise_case(seed: int, effect: float, n_fit: int = 40, n_test: int = 30, side: int = 16):
    """A small random encoder, pure-noise volumes in a spherical brain, random labels; with
    ``effect`` > 0 the positive subjects' volumes gain ``effect`` in a sphere (the planted
    signal). Returns (encoder, z of the fit volumes, fit labels, test volumes, test labels, planted mask)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_method("random", [SourceSpec("T1w", 1, side, 3)], ModelSettings.from_config(TINY))
    axes = np.indices((side,) * 3) - (side - 1) / 2
    brain = (axes ** 2).sum(0) < (0.45 * side) ** 2
    planted = ((axes - np.array([3, -3, 2])[:, None, None, None]) ** 2).sum(0) < 3.0 ** 2
    labels = rng.random(n_fit + n_test) < 0.5
    labels[:2], labels[n_fit:n_fit + 2] = [True, False], [True, False]  # both classes in both splits
    x = rng.standard_normal((n_fit + n_test, 1, side, side, side)).astype(np.float32)
    x[labels] += effect * planted
    x *= brain
    with torch.no_grad():
        z = model.encoders["T1w"](torch.as_tensor(x[:n_fit])).z.numpy()
    return model.encoders["T1w"], z, labels[:n_fit], x[n_fit:], labels[n_fit:], planted & brain


NULL_CASE = MapsSettings.from_config({"steps": 4, "batch_size": 128, "null_test": {"permutations": 19, "alpha": 0.05}})


def test_without_a_signal_significant_voxels_appear_at_the_stated_rate():
    """No planted signal (noise volumes, random labels, a random encoder): across repeats the
    share of maps with ANY voxel above the family-wise threshold is at most alpha = 0.05, up
    to a binomial tolerance (40 repeats: 7 or more false positives has probability 0.003).
    A threshold from the null maxima's mean instead of their 95th percentile fails it."""
    repeats, hits, peaks = 40, 0, []
    for seed in range(repeats):
        encoder, z, fit, x, test, _ = noise_case(seed, effect=0.0)
        result, _, _ = decision_maps(encoder, z, fit, x, test, 1.0, 0.5, TunedProbeSettings.from_config(PROBE), NULL_CASE,
                                     torch.device("cpu"))
        facts = result.info["null"]
        assert facts["permutations"] == 19 and len(facts["null_max"]) == 19 and facts["null_zero_decisions"] < 19
        hits += facts["n_significant"] > 0
        peaks.append(facts["peak"]["p"])
    assert hits <= 6, f"{hits} of {repeats} null maps have a significant voxel (alpha 0.05)"
    assert np.mean(np.array(peaks) <= 0.05) <= 6 / repeats and np.mean(peaks) > 0.3  # p is roughly uniform


def test_a_planted_signal_has_a_small_peak_p_in_the_planted_sphere():
    """The same small case with a strong effect planted in a sphere of the positive subjects:
    the peak beats every permuted-label map (p = 1 / 20), lies in the sphere, and the
    significant voxels lie mostly there. Without permuting the labels it would fail."""
    for seed in range(3):
        encoder, z, fit, x, test, planted = noise_case(seed, effect=3.0)
        result, _, _ = decision_maps(encoder, z, fit, x, test, 1.0, 0.5, TunedProbeSettings.from_config(PROBE), NULL_CASE,
                                     torch.device("cpu"))
        facts = result.info["null"]
        assert facts["peak"]["p"] == pytest.approx(1 / 20), facts["peak"]
        assert planted[tuple(facts["peak"]["voxel"])], facts["peak"]
        significant = result.brain & (np.abs(result.volume) > facts["threshold"])
        assert significant.sum() == facts["n_significant"] > 0
        assert (significant & planted).sum() > 0.5 * significant.sum()


def test_the_decision_is_the_probes_refit_on_the_raw_latent():
    """fold_decision turns the probe's scaler + elastic net into w . z + b on the raw z, the
    same logits as the probe's own model on standardised z."""
    rng = np.random.default_rng(0)
    z = rng.normal(5.0, [1.0, 10.0, 0.1], size=(200, 3))
    y = (z[:, 0] - 5 + 0.05 * (z[:, 1] - 5) + rng.normal(0, 0.5, 200)) > 0
    scaler, model = refit_tuned(z, y.astype(int), 0.5, 0.3, TunedProbeSettings.from_config(PROBE))
    decision = fold_decision(scaler, model, z, y)
    assert np.allclose(decision.logits(z), model.decision_function(scaler.transform(z)), atol=1e-8)
    assert decision.fit_auc > 0.8


def test_the_decision_is_read_from_the_probe_table(known, tmp_path):
    """probe_choice reads the test row of the source; a source the probe could not score is
    NoMap with the probe's note; a table that is not a binary probe's is an error."""
    table = probe_of(known / "random" / "latents.npz")
    import pandas as pd

    rows = pd.read_csv(table, sep="\t")
    row = rows[(rows["source"] == "T1w") & (rows["split"] == "test")].iloc[0]
    assert probe_choice(table, "T1w") == {"C": row["C"], "l1_ratio": row["l1_ratio"], "roc_auc": row["roc_auc"]}
    rows["note"] = rows["note"].astype(object)
    rows.loc[rows["source"] == "T1w", ["C", "note"]] = [np.nan, "roc_auc n/a: T1w: one class in test"]
    rows.to_csv(tmp_path / "nan.tsv", sep="\t", index=False)
    with pytest.raises(NoMap, match="one class in test"):
        probe_choice(tmp_path / "nan.tsv", "T1w")
    rows.drop(columns="l1_ratio").to_csv(tmp_path / "multi.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="not a binary probe table"):
        probe_choice(tmp_path / "multi.tsv", "T1w")


def test_a_probe_table_of_other_latents_fails_loudly(known, tmp_path):
    """The map's decision must reproduce the probe's test ROC AUC: a table whose AUC differs
    (another run's, a stale one) is a bug to stop on, never a map."""
    import pandas as pd

    rows = pd.read_csv(probe_of(known / "random" / "latents.npz"), sep="\t")
    rows.loc[(rows["source"] == "T1w") & (rows["split"] == "test"), "roc_auc"] += 0.01
    rows.to_csv(tmp_path / "stale.tsv", sep="\t", index=False)
    files = attribution_of(tmp_path, "T1w")
    with pytest.raises(ValueError, match="is not the probe's"):
        run_maps(known / "store", known / "random" / "latents.npz", known / "random" / "model.pt", "T1w", CLASSES, GRID,
                 {"steps": 4, "null_test": NO_NULL}, attribution=files["nii"], device="cpu", probe=tmp_path / "stale.tsv",
                 probe_settings=PROBE)
    assert not files["nii"].exists()


def test_the_maps_settings_come_from_the_schema_and_a_typo_is_named():
    from mmssl.config import validate
    from mmssl.schema import ConfigError

    assert MapsSettings.from_config({}) == MapsSettings(enabled=True, steps=32, batch_size=64,
                                                        null_test={"permutations": 39, "seed": 0, "alpha": 0.05})
    assert MapsSettings.from_config({"null_test": {"permutations": 19}}).null_settings.alpha == 0.05
    config = validate({"datasets": {"known": {"kind": "synthetic_mri"}, "oasis": {"kind": "bids_mri"}}})
    defaults = asdict(MapsSettings.from_config({}))
    assert config["datasets"]["known"]["maps"] == config["datasets"]["oasis"]["maps"] == defaults
    with pytest.raises(ConfigError, match="maps.*stepz"):
        validate({"datasets": {"known": {"kind": "synthetic_mri", "maps": {"stepz": 8}}}})
    with pytest.raises(ConfigError, match="permutationz"):
        validate({"datasets": {"known": {"kind": "synthetic_mri", "maps": {"null_test": {"permutationz": 8}}}}})
    with pytest.raises(ConfigError, match="maps"):  # the digits have no maps
        validate({"datasets": {"digits": {"kind": "two_view_mnist", "maps": {"enabled": True}}}})


# ---- link maps -----------------------------------------------------------------------

def test_methods_with_links():
    assert has_links("L-CL") and has_links("CS") and has_links("CL-CS-S") and has_links("CS@dcl")
    assert not any(has_links(m) for m in ("S", "L", "L-S", "random", "supervised", "L-CCA", "DCCAE"))


def test_an_upsampled_location_lands_on_the_block_it_summarises():
    """Location (i, j, k) of the 8^3 map of a 32^3 volume summarises voxels 4i..4i+3."""
    scores = torch.zeros(8, 8, 8)
    scores[2, 5, 7] = 1.0
    up = upsample_locations(scores, (32, 32, 32))
    peak = np.unravel_index(int(up.argmax()), up.shape)
    assert 8 <= peak[0] < 12 and 20 <= peak[1] < 24 and 28 <= peak[2] < 32
    assert torch.isclose(up.sum(), torch.tensor(64.0), rtol=1e-4)  # trilinear: each location's mass is its block's


def test_the_link_map_is_the_critic_of_the_training_projection(known, tmp_path):
    """The NIfTI equals an independent computation through ContrastiveMethod.project: the
    critic u_c . u_z / sqrt(D) of T1w's locations with fALFF's latent, mean over the test
    subjects, trilinear on the grid, zero outside the brain."""
    model_path = untrained("L-CL", known / "store", tmp_path / "model.pt")
    embed(known / "store", known / "split.tsv", model_path, tmp_path / "latents.npz", device="cpu")
    out = tmp_path / "T1w_desc-links_map.nii.gz"
    info = run_maps(known / "store", tmp_path / "latents.npz", model_path, "T1w", CLASSES, GRID, {}, links=out,
                    device="cpu")["links"]
    from mmssl.objectives.model_file import load_model

    model, _ = load_model(model_path)
    store = read_store(known / "store")
    with np.load(tmp_path / "latents.npz") as f:
        test = np.flatnonzero(f["split"] == "test")
        rows = store.index.set_index("sample").loc[f["sample"][test], "row"].to_numpy()
    x = {s: torch.as_tensor(np.asarray(store.arrays[s][np.sort(rows)], np.float32)) for s in store.source_names}
    with torch.no_grad():
        proj = model.project(x)
    expected = upsample_locations(critic_scores(proj["T1w"].u_c, proj["fALFF"].u_z).mean(0).reshape(8, 8, 8),
                                  (32, 32, 32)).numpy()
    brain = np.abs(x["T1w"].numpy()).sum((0, 1)) > 0
    img = nib.load(out)
    got = img.get_fdata()
    assert info["pairs"]["fALFF"]["n"] == len(test) and info["others"] == ["fALFF"]
    assert np.allclose(got[brain], expected[brain], atol=1e-4 * np.abs(expected).max())
    assert not got[~brain].any() and np.allclose(img.affine, mni_grid(GridSettings(**GRID)).affine)
    assert json.loads((tmp_path / "T1w_desc-links_map.json").read_text())["pairs"]["fALFF"]["n"] == len(test)


# ---- attribution maps: files, grid, rows ---------------------------------------------

def test_the_maps_are_nifti_on_the_mni_grid_with_sidecar_and_figure(known, tmp_path, caplog):
    files = attribution_of(tmp_path, "T1w")
    caplog.set_level("INFO")
    run_maps(known / "store", known / "random" / "latents.npz", known / "random" / "model.pt", "T1w", CLASSES, GRID,
             {"steps": 4, "null_test": {"permutations": 19, "seed": 7}}, attribution=files["nii"], figure=files["png"],
             device="cpu", probe=probe_of(known / "random" / "latents.npz"), probe_settings=PROBE)
    img = nib.load(files["nii"])
    grid = mni_grid(GridSettings(voxel_mm=6.0, size=32))
    assert img.shape == grid.shape and np.allclose(img.affine, grid.affine) and img.get_data_dtype() == np.float32
    assert img.header["descrip"].item().startswith(b"IG AD-HC random fold 0 T1w")
    volume = img.get_fdata()
    brain = np.abs(np.asarray(read_store(known / "store").arrays["T1w"][:5], np.float32)).sum((0, 1)) > 0
    assert np.isfinite(volume).all() and volume[brain].std() > 0 and not volume[~brain].any()  # zero input: zero IG
    side = json.loads(files["json"].read_text())
    with np.load(known / "random" / "latents.npz") as f:
        test_labels = f["label"][f["split"] == "test"]
    assert [side["n_negative"], side["n_positive"]] == [int((test_labels == c).sum()) for c in CLASSES]
    assert side["ig_completeness_error"] < 0.1 and side["logit_check_max_abs_diff"] < 1e-3
    null = side["null"]  # the permutation null: N, seed, threshold, significant voxels, the peak and its p
    assert (null["permutations"], null["seed"], null["alpha"], len(null["null_max"])) == (19, 7, 0.05, 19)
    assert null["threshold"] == max(null["null_max"]) and null["brain_voxels"] == int(brain.sum())
    assert null["n_significant"] == int((np.abs(volume[brain]) > null["threshold"]).sum())
    peak = tuple(null["peak"]["voxel"])
    assert abs(volume[peak]) == pytest.approx(np.abs(volume[brain]).max()) and volume[peak] == pytest.approx(null["peak"]["value"])
    assert null["peak"]["p"] == (1 + sum(m >= abs(null["peak"]["value"]) for m in null["null_max"])) / 20
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the job's log says how far along it is: the null's refits, then the IG pass, to the end
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("null: the decision refit on permuted labels 19/19 (elapsed") for line in lines), lines
    n_test = side["n_negative"] + side["n_positive"]
    assert any(line.startswith(f"integrated gradients (20 decision(s), 4 steps), subjects {n_test}/{n_test}")
               for line in lines), lines
    with pytest.raises(ValueError, match="grid"):
        map_grid({"voxel_mm": 3.0, "size": 64}, (32, 32, 32))


def test_only_subjects_having_the_source_are_attributed(known, tmp_path):
    """A store where half the subjects lack fALFF, with NaN planted in their (never to be
    read) rows: the map is finite, and counts exactly the test subjects having fALFF."""
    store = read_store(known / "store", mmap=False)
    index = store.index.drop(columns="row")
    lacking = np.random.default_rng(0).random(len(index)) < 0.5
    index[present_column("fALFF")] = (~lacking).astype(int)
    arrays = {s: store.arrays[s].copy() for s in store.source_names}
    arrays["fALFF"][lacking] = 0
    write_store(tmp_path / "store", index, arrays, store.sources)
    planted = np.load(tmp_path / "store" / "fALFF.npy", mmap_mode="r+")
    planted[lacking] = np.nan  # write_store refuses it; a reader of absent rows would now see NaN
    planted.flush()
    del planted
    model = untrained("random", tmp_path / "store", tmp_path / "model.pt")
    embed(tmp_path / "store", known / "split.tsv", model, tmp_path / "latents.npz", device="cpu")
    files = attribution_of(tmp_path, "fALFF")
    info = run_maps(tmp_path / "store", tmp_path / "latents.npz", model, "fALFF", CLASSES, GRID,
                    {"steps": 8, "null_test": NO_NULL},
                    attribution=files["nii"], device="cpu", probe=probe_of(tmp_path / "latents.npz"),
                    probe_settings=PROBE)["attribution"]
    split = read_split(known / "split.tsv")
    test = set(split.loc[split["split"] == "test", "subject"])
    having = index[index["subject"].isin(test) & ~lacking]
    assert info["n_negative"] + info["n_positive"] == len(having) < len(test)
    assert info["n_positive"] == int((having["label"] == "AD").sum())
    fit = set(split.loc[split["split"] == "train", "subject"])  # where the probe refits its decision
    assert info["n_fit"] == int((index["subject"].isin(fit) & ~lacking).sum())
    assert np.isfinite(nib.load(files["nii"]).get_fdata()).all()


def test_a_diverged_run_gives_nan_maps_that_say_why(known, tmp_path):
    store = read_store(known / "store")
    meta = model_meta("L-CL", 0, "diverged", 3, [asdict(s) for s in store.sources],
                      asdict(ModelSettings.from_config(TINY)), {}, "cpu")
    save_model(tmp_path / "model.pt", meta, None)
    embed(known / "store", known / "split.tsv", tmp_path / "model.pt", tmp_path / "latents.npz", device="cpu")
    files = attribution_of(tmp_path, "T1w")
    run_maps(known / "store", tmp_path / "latents.npz", tmp_path / "model.pt", "T1w", CLASSES, GRID, {},
             attribution=files["nii"], figure=files["png"], links=tmp_path / "links.nii.gz", device="cpu",
             probe=probe_of(tmp_path / "latents.npz"), probe_settings=PROBE)
    for nifti in (files["nii"], tmp_path / "links.nii.gz"):
        assert np.isnan(nib.load(nifti).get_fdata()).all()
    assert "diverged" in json.loads(files["json"].read_text())["note"] and files["png"].stat().st_size > 0


# ---- the known answer ----------------------------------------------------------------

def enrichment(volume: np.ndarray, brain: np.ndarray, region: tuple) -> float:
    """Share of the map's |value| inside ``region`` over the region's share of the brain."""
    grid = mni_grid(GridSettings(**GRID))
    inside = (region_mask(grid.affine, grid.shape, *region) > 0.5) & brain
    mass = np.abs(volume)
    return float(mass[inside].sum() / mass[brain].sum()) / float(inside.sum() / brain.sum())


def test_a_supervised_encoders_attribution_falls_in_the_planted_regions(known, tmp_path):
    """The disease lowers T1w in a left medial temporal sphere and fALFF in a posterior
    cingulate one; a supervised encoder's AD-vs-HC attribution should concentrate there,
    not in the frontal (T1w) / parietal (fALFF) spheres of the factors unrelated to the label."""
    run = tmp_path / "supervised"
    train(known / "store", known / "split.tsv", "supervised", 0, run / "model.pt", run / "metrics.tsv",
          {"epochs": 5, "batch_size": 16, "device": "cpu"}, TINY)
    embed(known / "store", known / "split.tsv", run / "model.pt", run / "latents.npz", device="cpu")
    store = read_store(known / "store")
    for source, planted, unrelated in (("T1w", ATROPHY_REGION, T1_SPECIFIC_REGION),
                                       ("fALFF", FALFF_REGION, FALFF_SPECIFIC_REGION)):
        files = attribution_of(run, source)
        info = run_maps(known / "store", run / "latents.npz", run / "model.pt", source, CLASSES, GRID,
                        {"steps": 16, "null_test": {"permutations": 19}},
                        attribution=files["nii"], device="cpu", probe=probe_of(run / "latents.npz"),
                        probe_settings=PROBE)["attribution"]
        volume = nib.load(files["nii"]).get_fdata()
        brain = np.abs(np.asarray(store.arrays[source][:10], np.float32)).sum((0, 1)) > 0
        hot, cold = enrichment(volume, brain, planted), enrichment(volume, brain, unrelated)
        assert info["test_roc_auc"] > 0.8, info  # the decision the map explains works
        assert info["test_roc_auc"] == pytest.approx(probe_choice(probe_of(run / "latents.npz"), source)["roc_auc"],
                                                     abs=1e-6)  # and it is the probe's
        assert hot > 4.0 and hot > 3.0 * cold, (source, hot, cold)
        null = info["null"]  # and the map beats its permuted-label null: the smallest p 19 permutations allow
        assert null["permutations"] == 19 and null["peak"]["p"] == pytest.approx(1 / 20), null["peak"]
        assert null["n_significant"] > 0 and null["threshold"] < abs(null["peak"]["value"])


# ---- the workflow --------------------------------------------------------------------

def dry_run(tmp_path: Path, text: str) -> dict[str, int]:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "1", f"--configfile={config}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return job_counts(proc.stdout)


def test_maps_are_planned_for_mri_datasets_and_not_for_digits(tmp_path):
    counts = dry_run(tmp_path, "methods: [random, S, L-CL]\ndatasets:\n  known:\n    kind: synthetic_mri\n"
                     "    n_subjects: 100\n    splits: {n_folds: 5, test: fold}\n    folds: [0, 1]\n"
                     "  digits: {kind: two_view_mnist, folds: [0]}\n")
    assert counts["maps"] == 3 * 2 * 2  # methods x folds x sources, the digits none
    assert counts["maps_links"] == 1 * 2 * 2  # L-CL only
    assert counts["train"] == 3 * 2 + 3  # the digits still train
    off = dry_run(tmp_path, "methods: [random, L-CL]\ndatasets:\n  known:\n    kind: synthetic_mri\n"
                  "    n_subjects: 100\n    folds: [0]\n    maps: {enabled: false}\n")
    assert "maps" not in off and "maps_links" not in off and off["train"] == 2

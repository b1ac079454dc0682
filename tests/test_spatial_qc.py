"""The 3 mm 64³ MNI grid, the structural/fALFF -> MNI pipelines and commands, and QC."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from mmssl.preprocess.pipeline import falff_to_mni, t1_to_mni
from mmssl.preprocess.masking import MaskSettings
from mmssl.preprocess.settings import MriSettings
from mmssl.preprocess.qc import QcThresholds, excluded_flags, qc_flags, qc_table, subject_montages, write_html, write_montage
from mmssl.preprocess.registration import apply_affine, load_transform
from mmssl.preprocess.spatial import GRID_THRESHOLD, GridSettings, grid_brain_mask, mni_brain_mask, mni_grid, mni_template

CENTRE = np.full(3, 31.5)  # centre of a 64-voxel axis, in voxels
GRID = GridSettings.from_config({})  # the schema's default grid: 3 mm, 64³
THRESHOLD = MaskSettings.from_config({}).template_threshold


def world_from_mni() -> np.ndarray:
    """A fixed, non-trivial template -> native map (8 deg about z, 0.95-1.05 scales, shifts)."""
    a = np.deg2rad(8)
    m = np.eye(4)
    m[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([1.05, 0.95, 1.0])
    m[:3, 3] = [6.0, -8.0, 5.0]
    return m


def native(kind: str) -> nib.Nifti1Image:
    """Head (T1w, 2 mm, skull-like shell), T2*-like brain (mean EPI, 4 mm), or a fALFF map
    (0.5 in the brain, 0.8 in a 15 mm ball at MNI (0, -56, 28)) on LAS native grids."""
    tpl, mask = mni_template(2), mni_brain_mask(2, GRID_THRESHOLD)
    brain = np.asarray(mask.dataobj) > 0
    dist = ndimage.distance_transform_edt(~brain, sampling=2.0)
    if kind == "t1":
        data = np.select([brain, dist <= 3, dist <= 9, dist <= 15], [tpl.get_fdata(), 0.12, 0.04, 0.75], 0.0)
    elif kind == "epi":
        data = np.where(brain, 80 + 80 * (1 - tpl.get_fdata()), 0.0)
    else:
        mm = np.moveaxis(np.indices(brain.shape), 0, -1) @ tpl.affine[:3, :3].T + tpl.affine[:3, 3]
        ball = np.linalg.norm(mm - [0, -56, 28], axis=-1) < 15
        data = np.where(brain, np.where(ball, 0.8, 0.5), 0.0)
    voxel = 2.0 if kind == "t1" else 4.0
    shape = tuple(int(s / voxel) for s in (210, 250, 210))
    affine = np.diag([-voxel, voxel, voxel, 1.0])
    affine[:3, 3] = world_from_mni()[:3, 3] - affine[:3, :3] @ (np.array(shape) - 1) / 2
    return apply_affine(nib.Nifti1Image(data.astype(np.float32), tpl.affine), np.linalg.inv(world_from_mni()), (shape, affine))


# --- grid --------------------------------------------------------------------------------


def test_grid_is_64_cubed_at_3mm_and_centred_on_the_brain():
    grid = mni_grid(GRID)
    assert grid.shape == (64, 64, 64)
    np.testing.assert_allclose(np.linalg.norm(grid.affine[:3, :3], axis=0), 3.0)
    mask = grid_brain_mask(GRID, 0, THRESHOLD)
    assert np.linalg.norm(np.array(ndimage.center_of_mass(mask)) - CENTRE) < 2.5
    idx = np.argwhere(mask)
    low_margin, high_margin = idx.min(0), 63 - idx.max(0)
    assert np.all(low_margin >= 2) and np.all(high_margin >= 2)  # nothing of the brain cropped
    assert np.all(np.abs(low_margin - high_margin) <= 1)  # bounding box centred
    brain_ml = mask.sum() * 27 / 1000
    assert 1500 < brain_ml < 2300  # the 1 mm template mask is 1883 ml


def test_dilated_mask_grows_by_one_voxel():
    thin, thick = grid_brain_mask(GRID, 0, THRESHOLD), grid_brain_mask(GRID, 1, THRESHOLD)
    assert np.all(thick[thin]) and thick.sum() > thin.sum()
    np.testing.assert_array_equal(thick, ndimage.binary_dilation(thin))


# --- pipelines ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t1_result():
    return t1_to_mni(native("t1"), MriSettings.from_config({}))


def test_t1_to_mni_puts_the_head_back_on_the_template(t1_result):
    t1, mask = t1_result.image.get_fdata(), t1_result.mask.get_fdata() > 0
    assert t1.shape == (64, 64, 64)
    np.testing.assert_allclose(t1_result.image.affine, mni_grid(GRID).affine)
    np.testing.assert_array_equal(mask, grid_brain_mask(GRID, 1, THRESHOLD))
    assert np.all(t1[~mask] == 0)
    # the template itself on the same grid: a registration or resampling error would decorrelate them
    grid = mni_grid(GRID)
    reference = apply_affine(mni_template(1), np.eye(4), (grid.shape, grid.affine), antialias_mm=3.0).get_fdata()
    brain = grid_brain_mask(GRID, 0, THRESHOLD)
    assert np.corrcoef(t1[brain], reference[brain])[0, 1] > 0.95
    com = np.array(ndimage.center_of_mass(t1 > 0.3))
    assert np.linalg.norm(com - CENTRE) < 3.0
    # native mask volume: template brain (1883 ml) scaled by det(1.05 * 0.95)
    assert t1_result.mask_volume_ml == pytest.approx(1883 * 1.05 * 0.95, rel=0.04)


def test_falff_follows_the_mean_epi_transform():
    epi, falff_native = native("epi"), native("falff")
    # the EPI mask: where the native map is not diluted by the resampling that made it
    epi_mask = nib.Nifti1Image((falff_native.get_fdata() > 0.49).astype(np.uint8), epi.affine)
    result = falff_to_mni(falff_native, epi, epi_mask, MriSettings.from_config({}))
    falff = result.falff.get_fdata()
    grid = mni_grid(GRID)
    ball_vox = np.linalg.solve(grid.affine, [0, -56, 28, 1])[:3]
    hot = np.argwhere(falff > 0.7)
    assert len(hot) > 20
    assert np.linalg.norm(hot.mean(0) - ball_vox) < 1.0  # within a 3 mm voxel of where it belongs
    assert np.all(falff[result.mask.get_fdata() == 0] == 0)
    # normalised interpolation: no dilution by the zeros outside the EPI mask at its edge
    assert falff[result.mask.get_fdata() > 0].min() > 0.49
    assert 0.5 < result.falff_mean_in_brain < 0.6


# --- commands ----------------------------------------------------------------------------


def test_t1_command_writes_outputs_and_excludes_bad_input(tmp_path):
    from scans import run_preprocess_t1

    t1 = tmp_path / "sub-01_ses-A_T1w.nii.gz"
    nib.save(native("t1"), t1)
    rc, status, out = run_preprocess_t1(t1, tmp_path / "preproc")
    assert rc == 0 and status is not None and status.empty  # header only: not excluded
    assert nib.load(out["mask"]).get_data_dtype() == np.uint8
    assert nib.load(out["image"]).shape == (64, 64, 64)
    xfm = load_transform(out["xfm"])
    assert np.abs(xfm - world_from_mni()).max() < 1.5  # template -> native, as documented
    qc = json.loads(out["qc"].read_text())
    assert qc["similarity_t1w"] > 1.2 and 1700 < qc["mask_volume_ml_t1w"] < 2100 and "registration_metric_t1w" in qc
    assert not {"similarity_t1", "mask_volume_ml", "registration_metric_t1"} & set(qc)  # the old, non-uniform names are gone
    assert qc["header_sform_qform_disagree"] == 0
    assert not list(tmp_path.rglob(".tmp*"))  # atomic writes leave nothing behind
    # the command refuses an image whose BIDS suffix is not the one it is told
    from mmssl.cli import main

    assert main(["preprocess-anat", "--image", str(t1), "--suffix", "T2w", "--settings-json", "{}",
                 *[a for k, p in out.items() for a in (f"--out-{k}", str(p))]]) == 1

    nan_img = native("t1")
    data = nan_img.get_fdata()
    data[10, 10, 10] = np.nan
    bad = tmp_path / "sub-02_ses-B_T1w.nii.gz"
    nib.save(nib.Nifti1Image(data, nan_img.affine), bad)
    corrupt = tmp_path / "sub-03_T1w.nii.gz"
    corrupt.write_bytes(t1.read_bytes()[:2000])
    for path, reason, subject, session in ((bad, "NaN", "02", "B"), (corrupt, "NIfTI", "03", "")):
        rc, status, out = run_preprocess_t1(path, tmp_path / "preproc")
        assert rc == 0 and len(status) == 1
        row = status.iloc[0]
        assert reason in row["reason"] and row["subject"] == subject and row["session"] == session
        assert row["path"] == str(path)
        # every other declared output exists as an empty placeholder: nothing looks finished
        assert all(out[k].stat().st_size == 0 for k in out if k != "status")


def test_settings_from_config_and_errors():
    settings = MriSettings.from_config({"backend": "python", "grid": {"size": 48}})
    assert settings.grid.size == 48 and settings.registration_epi.bins == 16
    assert MriSettings.from_config({"registration_epi": {"bins": 24}}).registration_epi.bins == 24
    assert MriSettings.from_config({"registration_epi": {"bins": 24}}).registration_epi.smoothing_sigmas == (2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="preprocess.backend"):
        MriSettings.from_config({"backend": "ants"})
    with pytest.raises(ValueError, match="preprocess.qc"):
        MriSettings.from_config({"qc": {"min_mask": 1}})
    with pytest.raises(ValueError, match=r"preprocess: Additional properties are not allowed \('falff' was unexpected\); allowed keys: backend"):
        MriSettings.from_config({"falff": {"band": [0.01, 0.1]}})  # falff is its own section


# --- QC ------------------------------------------------------------------------------------


def good_metrics(subject: str) -> dict:
    return {"subject": subject, "sample": f"{subject}_ses-A", "mask_volume_ml_t1w": 1600.0, "similarity_t1w": 1.3,
            "similarity_epi": 1.15, "falff_mean_in_brain": 0.5}


def test_qc_flags_a_tiny_mask_and_poor_fits():
    assert qc_flags(good_metrics("a")) == []
    tiny = good_metrics("b") | {"mask_volume_ml_t1w": 120.0}
    assert qc_flags(tiny) == ["small_mask_t1w"]
    assert qc_flags(good_metrics("b") | {"mask_volume_ml_t1w": 3500.0}) == ["large_mask_t1w"]
    poor = good_metrics("c") | {"similarity_t1w": 1.02, "similarity_epi": 1.01, "falff_mean_in_brain": float("nan")}
    assert qc_flags(poor) == ["low_similarity_t1w", "low_similarity_epi", "falff_out_of_range"]
    assert qc_flags(poor, QcThresholds.from_config({"min_similarity_t1w": 1.0, "min_similarity_epi": 1.0})) == ["falff_out_of_range"]
    assert qc_flags(tiny, QcThresholds.from_config({"min_mask_ml": 100.0})) == []  # thresholds are configurable
    # a sample without fALFF is not flagged for lacking it; one with fALFF is
    no_falff = good_metrics("d") | {"falff_mean_in_brain": float("nan")}
    assert qc_flags(no_falff | {"has_fALFF": 0}) == [] and qc_flags(no_falff | {"has_fALFF": 1}) == ["falff_out_of_range"]
    # a T2w / FLAIR source has flags of its own, with its own similarity threshold
    t2w = good_metrics("e") | {"mask_volume_ml_t2w": 200.0, "similarity_t2w": 1.10, "similarity_flair": 1.13}
    assert qc_flags(t2w) == ["small_mask_t2w", "low_similarity_t2w"]
    assert qc_flags(t2w, QcThresholds.from_config({"min_similarity_flair": 1.2})) == ["small_mask_t2w", "low_similarity_t2w",
                                                                                     "low_similarity_flair"]


def test_qc_table_montage_and_html_list_flagged_subjects_first(tmp_path, t1_result):
    t1, mask = t1_result.image.get_fdata(), t1_result.mask.get_fdata() > 0
    tiny = np.zeros_like(mask)
    tiny[30:34, 30:34, 30:34] = True
    rows = [good_metrics("a"), good_metrics("c"), good_metrics("b") | {"mask_volume_ml_t1w": tiny.sum() * 27 / 1000},
            good_metrics("b") | {"sample": "b_ses-B"}]  # b: one bad pair, one good
    table = qc_table(rows)
    assert list(table["subject"]) == ["b", "a", "b", "c"]  # per pair, flagged first
    assert table.loc[0, "flags"] == "small_mask_t1w" and table.loc[1, "flags"] == ""
    assert list(table.columns[:8]) == ["subject", "sample", "mask_volume_ml_t1w", "similarity_t1w", "similarity_epi",
                                       "falff_mean_in_brain", "flags", "montage"]
    shown = subject_montages(table)
    assert list(shown["subject"]) == ["b", "a", "c"] and shown.iloc[0]["sample"] == "b_ses-A"  # b's worst pair
    for row in shown.to_dict("records"):
        m = tiny if row["subject"] == "b" else mask
        rows = [("T1w", t1, m), ("fALFF", np.where(m, 0.5, 0.0), m)] if row["subject"] != "c" else [("T1w", t1, m)]
        write_montage(rows, tmp_path / "qc" / "montages" / f"{row['subject']}.png", title=row["subject"])
    table["montage"] = [str(tmp_path / "qc" / "montages" / f"{s}.png") for s in table["subject"]]
    png = (tmp_path / "qc" / "montages" / "b.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # a row of views per source: c (T1w only) gets a montage of half the height of a's
    heights = {s: plt_height(tmp_path / "qc" / "montages" / f"{s}.png") for s in "ac"}
    assert heights["c"] < 0.6 * heights["a"]
    excluded = pd.DataFrame([{"subject": "c", "session": "B", "path": "/bids/sub-c/ses-B/func/sub-c_ses-B_task-rest_bold.nii.gz",
                              "reason": "TR disagreement: sidecar says 2 s, header says 2.2 s"}])
    table = excluded_flags(table, excluded)
    assert table.loc[table["subject"] == "c", "flags"].tolist() == ["excluded_bold"]  # c's BOLD was excluded: never "ok"
    page = write_html(table, tmp_path / "qc" / "index.html", excluded=excluded).read_text()
    assert page.count("<img") == 3 and "3 subjects (4 samples), 2 subjects flagged" in page
    images = {s: base64.b64encode((tmp_path / "qc" / "montages" / f"{s}.png").read_bytes()).decode() for s in "abc"}
    assert all(f"src='data:image/png;base64,{data}'" in page for data in images.values())  # embedded: no broken link
    assert page.index(images["b"]) < page.index(images["c"]) < page.index(images["a"])  # flagged first
    assert page.index("b_ses-A") < page.index("b_ses-B") < page.index(images["b"])  # both of b's pairs listed
    assert "small_mask_t1w" in page and "<th>similarity_t1w</th>" in page and "<script" not in page
    assert page.index("Excluded (1)") < page.index("TR disagreement") < page.index("b_ses-A")


def plt_height(png: Path) -> int:
    """Pixel height of a PNG (from its IHDR chunk)."""
    return int.from_bytes(png.read_bytes()[20:24], "big")


def test_derivative_names(tmp_path):
    from mmssl.paths import derivatives_of

    t1 = derivatives_of(tmp_path, "/bids/sub-OAS30001/ses-d0129/anat/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz")
    assert t1["image"] == str(tmp_path / "sub-OAS30001/ses-d0129/anat/sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brain_T1w.nii.gz")
    assert Path(t1["mask"]).name == "sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brainT1w_mask.nii.gz"
    assert Path(t1["xfm"]).name == "sub-OAS30001_ses-d0129_run-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.txt"
    # a T2w of the same entities: no file name in common with the T1w's
    t2 = derivatives_of(tmp_path, "/bids/sub-OAS30001/ses-d0129/anat/sub-OAS30001_ses-d0129_run-01_T2w.nii.gz")
    assert Path(t2["mask"]).name == "sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brainT2w_mask.nii.gz"
    assert Path(t2["image"]).name.endswith("_desc-brain_T2w.nii.gz") and not set(t1.values()) & set(t2.values())
    bold = derivatives_of(tmp_path, "sub-OAS30001_task-rest_run-02_bold.nii.gz")  # no session
    assert bold["fALFF"] == str(tmp_path / "sub-OAS30001/func/sub-OAS30001_task-rest_run-02_space-MNI152NLin2009aSym_res-3mm_desc-falff_boldmap.nii.gz")
    assert "ALFF" not in bold
    alff = derivatives_of(tmp_path, "sub-OAS30001_task-rest_run-02_bold.nii.gz", alff=True)
    assert Path(alff["ALFF"]).name == "sub-OAS30001_task-rest_run-02_space-MNI152NLin2009aSym_res-3mm_desc-alff_boldmap.nii.gz"
    with pytest.raises(ValueError, match="not a BIDS"):
        derivatives_of(tmp_path, "brain.nii.gz")


def test_a_scan_preprocessed_twice_with_one_itk_thread_gives_identical_files(tmp_path):
    """The rules run each scan job with ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} (1 in
    the profiles): a rerun then writes the same transform and volume, byte for byte (with
    ITK's default of every core, two runs differed in the transform's 6th digit)."""
    import os
    import subprocess
    import sys

    from mmssl.paths import derivatives_of

    t1 = tmp_path / "sub-01_ses-A_T1w.nii.gz"
    nib.save(native("t1"), t1)
    runs = []
    for name in ("a", "b"):
        out = derivatives_of(tmp_path / name, t1)
        flags = [arg for key, path in out.items() for arg in (f"--out-{key.lower().replace('_', '-')}", path)]
        env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "mmssl", "preprocess-anat", "--image", str(t1), "--suffix", "T1w",
                        "--settings-json", "{}", *flags], env=env, check=True, capture_output=True)
        runs.append(out)
    assert Path(runs[0]["xfm"]).read_bytes() == Path(runs[1]["xfm"]).read_bytes()
    assert np.array_equal(nib.load(runs[0]["image"]).get_fdata(), nib.load(runs[1]["image"]).get_fdata())

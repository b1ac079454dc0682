"""Motion correction (FSL mcflirt, through stand-in executables) and framewise displacement."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mmssl.config import ConfigError, validate
from mmssl.preprocess.motion import MOTION_COLUMNS, confounds_table, framewise_displacement, motion_summary
from mmssl.preprocess.settings import MriSettings
from mmssl.preprocess.qc import QcThresholds, qc_flags


def test_framewise_displacement_matches_power_2012_by_hand():
    params = np.zeros((4, 6))
    params[1, 3] = 1.0                  # 1 mm along x
    params[2, 3], params[2, 2] = 1.0, 0.01  # then 0.01 rad about z: 0.5 mm of arc at 50 mm
    params[3] = [0.01, 0, 0.01, 1.0, -2.0, 0.5]  # 0.5 mm arc + 2 mm + 0.5 mm
    np.testing.assert_allclose(framewise_displacement(params), [0.0, 1.0, 0.5, 3.0])
    assert motion_summary(params, dummy_volumes=0) == pytest.approx({"mean_fd": 1.5, "max_fd": 3.0})
    # dummy volumes are left out: FD restarts at the first kept volume
    assert motion_summary(params, dummy_volumes=2) == pytest.approx({"mean_fd": 3.0, "max_fd": 3.0})
    table = confounds_table(params)
    assert list(table.columns) == [*MOTION_COLUMNS, "framewise_displacement"]
    with pytest.raises(ValueError, match=r"\(volumes, 6\)"):
        framewise_displacement(params[:, :5])


def test_motion_correction_needs_the_fsl_backend_and_is_checked_before_any_job():
    with pytest.raises(ValueError, match="needs preprocess.backend: fsl"):
        MriSettings.from_config({"motion_correction": True})
    with pytest.raises(ValueError, match=r"preprocess\.motion_correction: 'yes' is not of type 'boolean'"):
        MriSettings.from_config({"backend": "fsl", "motion_correction": "yes"})
    assert MriSettings.from_config({"backend": "fsl", "motion_correction": True}).motion_correction
    # validate() is the one check of a config: the schema names a wrong key with the allowed ones ...
    config = {"datasets": {"oasis": {"kind": "bids_mri", "preprocess": {"motion_corection": True}}}}
    with pytest.raises(ConfigError, match=r"datasets\.oasis\.preprocess: .*'motion_corection' was unexpected.*"
                                          r"allowed keys: .*motion_correction"):
        validate(config)
    # ... and the settings classes judge what the schema cannot, before any job
    config = {"datasets": {"oasis": {"kind": "bids_mri", "falff": {"band": [0.1, 0.01]}}}}
    with pytest.raises(ConfigError, match=r"datasets\.oasis\.falff: .*0 < low < high"):
        validate(config)
    config = {"datasets": {"oasis": {"kind": "bids_mri", "preprocess": {"motion_correction": True}}}}
    with pytest.raises(ConfigError, match=r"datasets\.oasis\.preprocess: .*needs preprocess\.backend: fsl"):
        validate(config)
    config = {"datasets": {"oasis": {"kind": "bids_mri", "preprocess": {"backend": "fsl", "motion_correction": True}}}}
    assert validate(config)["datasets"]["oasis"]["preprocess"]["registration_epi"]["bins"] == 16  # defaults filled


def test_high_motion_is_flagged_only_when_measured():
    good = {"mask_volume_ml_t1w": 1500, "similarity_t1w": 1.3, "similarity_epi": 1.1, "falff_mean_in_brain": 0.4}
    assert qc_flags(good) == []
    assert qc_flags(good | {"mean_fd": 0.2}) == []
    assert qc_flags(good | {"mean_fd": 0.8}) == ["high_motion"]
    assert qc_flags(good | {"mean_fd": 0.8}, QcThresholds.from_config({"max_mean_fd": 1.0})) == []


@pytest.fixture(scope="module")
def one_bold(tmp_path_factory):
    from mmssl.data.synthetic import make_synthetic_bids

    root = make_synthetic_bids(tmp_path_factory.mktemp("bids") / "bids", n_subjects=1, seed=5, n_volumes=80,
                               compresslevel=1)
    bold = sorted(root.glob("sub-*/ses-*/func/*_bold.nii.gz"))[0]
    prefix = bold.name.split("_task-")[0]
    world_from_mni = np.loadtxt(root / "derivatives" / "truth" / f"{prefix}_T1w_affine.txt")
    return bold, bold.with_name(bold.name.replace(".nii.gz", ".json")), world_from_mni


def _preprocess_bold(bold, sidecar, preproc, settings, falff=None):
    from scans import run_preprocess_bold

    return run_preprocess_bold(bold, sidecar, preproc, settings, falff)


def test_mcflirt_runs_before_falff_and_its_motion_reaches_qc(tmp_path, one_bold, stub_fsl):
    bold, sidecar, world_from_mni = one_bold
    n_volumes = nib.load(bold).shape[3]
    params = np.zeros((n_volumes, 6))
    params[:, 3] = np.where(np.arange(n_volumes) % 2, 0.6, 0.0)  # 0.6 mm jumps every volume
    np.savetxt(tmp_path / "motion.par", params)
    np.savetxt(tmp_path / "m2f.txt", np.linalg.inv(world_from_mni))
    stub_fsl(STUB_PAR=tmp_path / "motion.par", STUB_MOVING_TO_FIXED=tmp_path / "m2f.txt")
    falff = {"dummy_volumes": 4}

    medians = {}
    for mc in (False, True):
        preproc = tmp_path / f"mc{int(mc)}"
        rc, status, out = _preprocess_bold(bold, sidecar, preproc, {"backend": "fsl", "motion_correction": mc}, falff)
        assert rc == 0 and status is not None and status.empty, status  # not excluded
        mask = np.asarray(nib.load(out["mask_native"]).dataobj) > 0
        medians[mc] = float(np.median(nib.load(out["falff_native"]).get_fdata()[mask]))
        qc = json.loads(out["qc"].read_text())
        confounds = out["confounds"]
        # confounds always hold the global signal and DVARS; the motion columns only with mcflirt
        columns = set(pd.read_csv(confounds, sep="\t").columns)
        assert {"global_signal", "dvars"} <= columns and ("framewise_displacement" in columns) == mc
        assert ("mean_fd" in qc) == mc
    # the stub's 0.4 cycles/volume oscillation only exists in the corrected series
    assert medians[True] < 0.5 * medians[False], medians
    table = pd.read_csv(confounds, sep="\t")
    np.testing.assert_allclose(table[list(MOTION_COLUMNS)].to_numpy(), params)
    assert table["framewise_displacement"].iloc[1:].tolist() == pytest.approx([0.6] * (n_volumes - 1))
    assert qc["mean_fd"] == pytest.approx(0.6) and qc["max_fd"] == pytest.approx(0.6)
    # FLIRT's fit is scored on the same scale as the python backend's: only motion is flagged
    assert qc_flags(qc | {"mask_volume_ml_t1w": 1500, "similarity_t1w": 1.3}) == ["high_motion"]


def test_motion_correction_without_fsl_fails_the_job_and_excludes_nothing(tmp_path, one_bold, monkeypatch):
    bold, sidecar, _ = one_bold
    monkeypatch.delenv("FSLDIR", raising=False)
    rc, status, _ = _preprocess_bold(bold, sidecar, tmp_path / "p", {"backend": "fsl", "motion_correction": True})
    assert rc != 0 and status is None  # no status file: Snakemake sees a failed job, not an excluded scan

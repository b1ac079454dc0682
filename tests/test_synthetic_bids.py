"""The synthetic OASIS-3-shaped dataset: determinism, ground truth, contrasts, single-modality
subjects, planted group effects, discovery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn import datasets
from scipy import ndimage

from mmssl.bids.layout import discover
from mmssl.bids.clinical import PairingSettings, build_samples, read_clinical
from mmssl.preprocess.falff import FalffSettings, falff_file, read_tr
from mmssl.settings import schema_default
from mmssl.data.synthetic import BAD_INPUTS, CLINICAL_NAME, REGION_RADIUS_MM, REGIONS, make_synthetic_bids

N_VOLUMES = 120
DUMMIES = 4
ALL = ["T1w", "T2w", "FLAIR", "bold"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # 5 subjects (see synthetic._plan): subject 2 has two sessions, 3 no BOLD run, 4 two BOLD
    # runs, 5 a BOLD run and no structural image; 1 and 3 a FLAIR; plus the defective
    # subjects of BAD_INPUTS (ids OAS399xx).
    out = tmp_path_factory.mktemp("synthetic") / "bids"
    return make_synthetic_bids(out, n_subjects=5, seed=3, groups=("HC", "AD"), proportions=(0.6, 0.4),
                               n_volumes=N_VOLUMES, dummy_volumes=DUMMIES, bad_inputs=True, compresslevel=1)


def _good(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table["subject"].str.startswith("OAS399")]


def _truth(dataset: Path) -> pd.DataFrame:
    return pd.read_csv(dataset / "derivatives/truth/sessions.tsv", sep="\t", dtype={"session": str})


def _t1(dataset: Path, subject: str, session: str, suffix: str = "T1w") -> nib.Nifti1Image:
    return nib.load(dataset / f"sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}_run-01_{suffix}.nii.gz")


def _to_mni(image: nib.Nifti1Image, world_from_mni: np.ndarray, mni: nib.Nifti1Image, order: int = 1) -> np.ndarray:
    """Resample a native image onto the MNI grid, given the MNI -> native world affine."""
    native_from_mni_voxel = np.linalg.inv(image.affine) @ world_from_mni @ mni.affine
    return ndimage.affine_transform(np.asarray(image.dataobj, dtype=np.float32), native_from_mni_voxel[:3, :3],
                                    native_from_mni_voxel[:3, 3], output_shape=mni.shape, order=order)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_per_seed(tmp_path):
    kwargs = dict(n_subjects=1, groups=("AD",), proportions=(1.0,), n_volumes=50, dummy_volumes=2,
                  compresslevel=1)
    first = _hashes(make_synthetic_bids(tmp_path / "a", seed=5, **kwargs))
    assert first == _hashes(make_synthetic_bids(tmp_path / "b", seed=5, **kwargs))
    other = _hashes(make_synthetic_bids(tmp_path / "c", seed=6, **kwargs))
    images = [k for k in first if k.endswith("T1w.nii.gz")]
    assert images and all(first[k] != other.get(k) for k in images if k in other) and first != other
    # Regenerating over its own output is allowed; over anything else it is refused.
    make_synthetic_bids(tmp_path / "a", seed=5, **kwargs)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        make_synthetic_bids(tmp_path / "mine", seed=5, **kwargs)


def test_layout_clinical_table_and_discovery_agree_with_the_truth(dataset):
    truth = _truth(dataset)
    found = discover(dataset, ALL)
    assert _good(found.excluded).empty
    scans = _good(found.scans)
    assert len(truth) == 6 and list(truth["bold_runs"]) == [1, 1, 1, 0, 2, 1]
    for suffix, expected in (("T1w", 5), ("T2w", 5), ("FLAIR", 2)):
        assert len(scans.query("modality == @suffix")) == truth[suffix].sum() == expected, suffix
    assert len(scans.query("modality == 'bold'")) == truth["bold_runs"].sum() == 6
    default = discover(dataset, ["T1w", "bold"])  # the default sources' modalities
    result = build_samples(default.scans, read_clinical(dataset / CLINICAL_NAME), ["T1w", "bold"], PairingSettings.from_config({}))
    assert _good(default.excluded).empty and _good(result.excluded).empty  # single-modality subjects are samples
    participants = pd.read_csv(dataset / "participants.tsv", sep="\t")
    participants = participants[~participants["participant_id"].str.startswith("sub-OAS399")]
    subjects = _good(result.subjects)
    assert dict(zip("sub-" + subjects["subject"], subjects["label"])) == dict(zip(participants["participant_id"], participants["group"]))
    # 2 sessions -> 2 x 2 samples; 2 runs -> 2; no BOLD -> a T1w-only sample; no T1w -> a fALFF-only one
    assert subjects.set_index("subject")["n_samples"].to_dict() == {"OAS30001": 1, "OAS30002": 4, "OAS30003": 1, "OAS30004": 2,
                                                                    "OAS30005": 1}
    single = _good(result.samples).set_index("subject")
    assert single.loc["OAS30003", "bold_path"] == "" and single.loc["OAS30005", "T1w_path"] == ""
    for bold in scans.query("modality == 'bold'").itertuples():
        assert json.loads(Path(bold.sidecar).read_text())["RepetitionTime"] == 2.2
        assert read_tr(bold.path, bold.sidecar, schema_default("falff", "tr_tolerance")) == 2.2  # header TR (s or ms) agrees with the sidecar
        assert nib.load(bold.path).shape[3] == N_VOLUMES


def test_ground_truth_affine_is_the_one_that_placed_the_head(dataset):
    mni = datasets.load_mni152_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0
    template = mni.get_fdata()[brain]
    for row in _truth(dataset).query("T1w == 1").itertuples():
        image = _t1(dataset, row.subject, row.session)
        assert np.allclose(image.affine, np.array(json.loads(row.t1_header_affine)), atol=1e-5)
        world_from_mni = np.loadtxt(dataset / f"derivatives/truth/sub-{row.subject}_ses-{row.session}_T1w_affine.txt")
        assert np.allclose(world_from_mni[3], [0, 0, 0, 1])
        recovered = np.corrcoef(_to_mni(image, world_from_mni, mni)[brain], template)[0, 1]
        unmoved = np.corrcoef(_to_mni(image, np.eye(4), mni)[brain], template)[0, 1]
        assert recovered > 0.9 and recovered > unmoved + 0.1, (row.subject, recovered, unmoved)


def test_t2w_and_flair_show_the_same_head_in_their_own_contrasts(dataset):
    """T2w: CSF bright, white matter dark; FLAIR: CSF dark, grey matter brighter than white
    matter; both on the session's T1w grid, placed by the same ground-truth affine."""
    mni = datasets.load_mni152_template(resolution=2)
    gm = datasets.load_mni152_gm_mask(resolution=2).get_fdata() > 0
    wm = datasets.load_mni152_wm_mask(resolution=2).get_fdata() > 0
    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0
    csf = brain & (mni.get_fdata() < 0.3) & ~gm & ~wm
    rows = _truth(dataset).query("FLAIR == 1")
    assert len(rows) == 2
    for row in rows.itertuples():
        world_from_mni = np.loadtxt(dataset / f"derivatives/truth/sub-{row.subject}_ses-{row.session}_T1w_affine.txt")
        median = {}
        for suffix in ("T1w", "T2w", "FLAIR"):
            image = _t1(dataset, row.subject, row.session, suffix)
            assert np.allclose(image.affine, _t1(dataset, row.subject, row.session).affine)
            head = _to_mni(image, world_from_mni, mni)
            median[suffix] = {t: float(np.median(head[m])) for t, m in (("csf", csf), ("gm", gm & ~wm), ("wm", wm & ~gm))}
        assert median["T1w"]["csf"] < median["T1w"]["gm"] < median["T1w"]["wm"]
        assert median["T2w"]["csf"] > median["T2w"]["gm"] > median["T2w"]["wm"]
        assert median["FLAIR"]["csf"] < median["FLAIR"]["wm"] < median["FLAIR"]["gm"]


def _region_means(dataset: Path, subject: str, session: str, tmp_path: Path) -> tuple[float, float, nib.Nifti1Image]:
    """fALFF mean inside the planted spheres and in the rest of the EPI mask, and the mask image."""
    bold = dataset / f"sub-{subject}/ses-{session}/func/sub-{subject}_ses-{session}_task-rest_run-01_bold.nii.gz"
    outs = [tmp_path / f"{subject}_{n}.nii.gz" for n in ("falff", "mask", "mean")]
    falff_file(bold, str(bold).replace(".nii.gz", ".json"), *outs, settings=FalffSettings.from_config({"dummy_volumes": DUMMIES}))
    values, mask = nib.load(outs[0]).get_fdata(), nib.load(outs[1])
    world_from_mni = np.loadtxt(dataset / f"derivatives/truth/sub-{subject}_ses-{session}_T1w_affine.txt")
    ijk = np.argwhere(mask.get_fdata() > 0)
    mni_mm = (np.linalg.inv(world_from_mni) @ mask.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    inside = np.zeros(len(ijk), bool)
    for _, centre in REGIONS:
        inside |= np.linalg.norm(mni_mm - centre, axis=1) <= REGION_RADIUS_MM
    v = values[tuple(ijk.T)]
    return float(v[inside].mean()), float(v[~inside].mean()), mask


def test_ad_has_lower_low_frequency_amplitude_in_the_planted_regions(dataset, tmp_path):
    truth = _truth(dataset).query("bold_runs > 0").drop_duplicates("subject")
    hc = truth.query("group == 'HC'").iloc[0]
    ad = truth.query("group == 'AD'").iloc[0]
    hc_region, hc_rest, hc_mask = _region_means(dataset, hc.subject, hc.session, tmp_path)
    ad_region, ad_rest, _ = _region_means(dataset, ad.subject, ad.session, tmp_path)
    assert ad_region < hc_region - 0.05
    assert ad_region < ad_rest - 0.05 and abs(hc_region - hc_rest) < 0.03
    # The BOLD run shares the session's head position: its EPI mask lands on the MNI brain.
    mni_mask = datasets.load_mni152_brain_mask(resolution=2)
    world_from_mni = np.loadtxt(dataset / f"derivatives/truth/sub-{hc.subject}_ses-{hc.session}_T1w_affine.txt")
    moved = _to_mni(hc_mask, world_from_mni, mni_mask, order=0) > 0
    brain = mni_mask.get_fdata() > 0
    assert 2 * (moved & brain).sum() / (moved.sum() + brain.sum()) > 0.8


def test_ad_atrophy_and_non_steady_state_volumes(dataset):
    mni = datasets.load_mni152_template(resolution=2)
    gm = datasets.load_mni152_gm_mask(resolution=2).get_fdata() > 0
    wm = datasets.load_mni152_wm_mask(resolution=2).get_fdata() > 0
    contrast = {}
    for row in _truth(dataset).query("T1w == 1").itertuples():
        world_from_mni = np.loadtxt(dataset / f"derivatives/truth/sub-{row.subject}_ses-{row.session}_T1w_affine.txt")
        head = _to_mni(_t1(dataset, row.subject, row.session), world_from_mni, mni)
        contrast.setdefault(row.group, []).append(np.median(head[gm & ~wm]) / np.median(head[wm & ~gm]))
    assert max(contrast["AD"]) < min(contrast["HC"])  # grey matter darker relative to white matter
    bold = next(dataset.glob("sub-*/ses-*/func/*_bold.nii.gz"))
    data = nib.load(bold).get_fdata()
    brain = data[..., -1] > 0
    levels = data[brain].mean(axis=0)
    assert levels[0] > 1.3 * levels[DUMMIES:].mean() and abs(levels[DUMMIES] / levels[DUMMIES:].mean() - 1) < 0.02


def test_bad_inputs_are_excluded_by_the_expected_step_with_their_reason(dataset, tmp_path):
    bad = pd.read_csv(dataset / "derivatives/truth/bad_inputs.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(bad["subject"]) == [b[0] for b in BAD_INPUTS]
    found = discover(dataset, ["T1w", "bold"])
    result = build_samples(found.scans, read_clinical(dataset / CLINICAL_NAME), ["T1w", "bold"], PairingSettings.from_config({}))
    stage_tables = {"discover": found.excluded, "clinical": result.excluded}
    from scans import run_preprocess_bold, run_preprocess_t1

    for row in bad.itertuples():
        if row.excluded_by in stage_tables:
            reasons = stage_tables[row.excluded_by].query("subject == @row.subject")["reason"]
            assert reasons.str.contains(row.reason_contains).any(), (row.subject, list(reasons))
            assert row.subject not in set(result.subjects["subject"])
            continue
        assert row.subject in set(result.samples["subject"])  # falff- and header-stage defects pass discovery
        scan = dataset / row.path
        if row.excluded_by == "header":  # a T1w header: checked before anything reads the image
            rc, status, out = run_preprocess_t1(scan, tmp_path / "preproc")
        else:
            rc, status, out = run_preprocess_bold(scan, Path(str(scan).replace(".nii.gz", ".json")), tmp_path / "preproc",
                                                  falff={"dummy_volumes": DUMMIES})
        assert rc == 0 and len(status) == 1, status  # excluded, and the job succeeds
        excluded = status.iloc[0]
        assert (excluded["subject"], excluded["session"]) == (row.subject, row.session)
        assert row.reason_contains in excluded["reason"] and excluded["path"] == str(scan)
        assert all(out[k].stat().st_size == 0 for k in out if k != "status")  # empty placeholders, not images
    assert {row.excluded_by for row in bad.itertuples()} == {"discover", "clinical", "falff", "header"}


def test_a_slab_acquisition_is_excluded_for_partial_coverage(dataset, tmp_path):
    """After registration, a run whose field of view covers too little of the MNI brain mask
    (7t_trt's acq-prefrontal, a slab) is excluded; a whole-brain run passes and reports its
    coverage in QC."""
    from scans import run_preprocess_bold

    found = discover(dataset, ["T1w", "bold"])
    bold = Path(found.scans.query("modality == 'bold'")["path"].iloc[0])
    sidecar = Path(str(bold).replace(".nii.gz", ".json"))
    rc, status, out = run_preprocess_bold(bold, sidecar, tmp_path / "whole", falff={"dummy_volumes": DUMMIES})
    assert rc == 0 and status.empty, status
    coverage = json.loads(out["qc"].read_text())["coverage_epi"]
    assert 0.8 <= coverage <= 1.0, coverage
    image = nib.load(bold)
    slab_path = tmp_path / "bids" / bold.name
    slab_path.parent.mkdir()
    nz = image.shape[2]
    nib.save(image.slicer[:, :, nz - nz // 3:], slab_path)  # the top third of the slices, affine moved along
    rc, status, out = run_preprocess_bold(slab_path, sidecar, tmp_path / "slab", falff={"dummy_volumes": DUMMIES})
    assert rc == 0 and len(status) == 1
    assert status.iloc[0]["reason"].startswith("partial coverage: the run covers ")
    assert "below preprocess.min_coverage 80%" in status.iloc[0]["reason"], status.iloc[0]["reason"]

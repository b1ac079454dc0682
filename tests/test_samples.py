"""Samples instead of pairs: any number of sources, subjects lacking a modality, scans
lost in preprocessing (collect), the sample ids and the ``sources`` config key."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mmssl.config import validate
from mmssl.modalities import modalities_of
from mmssl.paths import DATATYPE, derivatives_of
from mmssl.bids.layout import session_days
from mmssl.bids.clinical import (
    PairingSettings,
    build_samples,
    read_clinical,
    sample_id,
    sample_keys,
)
from mmssl.bids.collect import collect, preproc_samples, write_status
from mmssl.schema import ConfigError


def scan(subject: str, session: str, modality: str, run: str = "01", task: str = "rest") -> dict:
    """A discover() row of a real-looking BIDS path."""
    folder = DATATYPE[modality]
    entities = f"sub-{subject}_ses-{session}" + (f"_task-{task}" if modality == "bold" else "") + f"_run-{run}"
    return {"subject": subject, "session": session, "modality": modality, "run": run, "acq": "", "task": task if modality == "bold" else "",
            "key": f"ses-{session}_run-{run}", "path": f"/bids/sub-{subject}/ses-{session}/{folder}/{entities}_{modality}.nii.gz",
            "sidecar": "", "days": session_days(session)}


def clinical(tmp_path: Path, subjects: dict[str, str]) -> pd.DataFrame:
    """One visit on day 0 per subject, HC or AD."""
    dx = {"HC": (0.0, "Cognitively normal"), "AD": (1.0, "AD Dementia")}
    rows = [{"OASISID": s, "days_to_visit": 0, "CDRTOT": dx[g][0], "dx1": dx[g][1], "age at visit": 70.0, "M/F": "F"}
            for s, g in subjects.items()]
    path = tmp_path / "clinical.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return read_clinical(path)


def test_sample_ids_round_trip_and_keep_the_paper_pair_id():
    assert sample_id("A", ["ses-d0001_run-01", "ses-d0001_run-02"]) == "sub-A_ses-d0001_run-01__ses-d0001_run-02"
    assert sample_id("A", [None, "ses-d0001_run-02", None]) == "sub-A_none__ses-d0001_run-02__none"
    assert sample_keys("sub-A_none__ses-d0001_run-02__none", "A", 3) == [None, "ses-d0001_run-02", None]
    with pytest.raises(ValueError, match="2 scan keys"):
        sample_keys("sub-A_ses-d0001_run-01", "A", 2)


def test_three_sources_give_samples_with_empty_columns_where_a_modality_is_missing(tmp_path):
    """T1w, T2w, fALFF and ALFF: three raw modalities (one BOLD run gives both maps). A
    subject with a T2w only is a sample with every other column empty; a subject with no
    scan of the sources is left out by discovery (see test_bids_discovery), not here."""
    sources = ["T1w", "T2w", "fALFF", "ALFF"]
    modalities = modalities_of(sources)
    assert modalities == ["T1w", "T2w", "bold"]
    scans = pd.DataFrame([scan("A", "d0000", "T1w"), scan("A", "d0000", "T2w"), scan("A", "d0000", "bold"),
                          scan("A", "d0000", "bold", "02"), scan("B", "d0000", "T2w")])
    result = build_samples(scans, clinical(tmp_path, {"A": "HC", "B": "AD"}), modalities,
                           PairingSettings.from_config({"pairing": "same_session"}))
    assert result.samples["sample"].tolist() == [
        "sub-A_ses-d0000_run-01__ses-d0000_run-01__ses-d0000_run-01", "sub-A_ses-d0000_run-01__ses-d0000_run-01__ses-d0000_run-02",
        "sub-B_none__ses-d0000_run-01__none"]
    b = result.samples.iloc[2]
    assert b["T2w_path"].endswith("sub-B_ses-d0000_run-01_T2w.nii.gz") and b["T1w_path"] == b["bold_path"] == ""
    assert (b["label"], b["days_gap"]) == ("AD", 0.0) and result.excluded.empty
    with pytest.raises(ValueError, match=r"modalities \['FLAIR'\] that are not among the configured"):
        build_samples(pd.DataFrame([scan("A", "d0000", "FLAIR")]), clinical(tmp_path, {"A": "HC"}), modalities)


def _derivatives(root: Path, raw: str, alff: bool = False) -> None:
    """Non-empty stand-ins of every derivative of ``raw`` (an empty file is an excluded
    scan's placeholder)."""
    for path in derivatives_of(root, raw, alff=alff).values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("x")


def test_collect_takes_failed_scans_out_of_their_samples(tmp_path):
    """A: one of two BOLD runs fails -> its (T1w, BOLD) sample would be a T1w-only copy of
    the other one and goes; B: its only BOLD run fails -> a T1w-only sample, renamed; C:
    its only scan fails -> the sample and the subject are excluded with the reason; D: a
    BOLD run and no T1w from the start -> a fALFF-only sample."""
    scans = pd.DataFrame([scan("A", "d0000", "T1w"), scan("A", "d0000", "bold"), scan("A", "d0000", "bold", "02"),
                          scan("B", "d0000", "T1w"), scan("B", "d0000", "bold"), scan("C", "d0000", "T1w"),
                          scan("D", "d0000", "bold")])
    samples = build_samples(scans, clinical(tmp_path, {s: "HC" for s in "ABCD"}), ["T1w", "bold"]).samples
    assert len(samples) == 5
    root = tmp_path / "preproc"
    failed = {scan("A", "d0000", "bold", "02")["path"], scan("B", "d0000", "bold")["path"], scan("C", "d0000", "T1w")["path"]}
    statuses = []
    for row in scans.itertuples():
        out = derivatives_of(root, row.path)
        if row.path in failed:
            Path(out["status"]).parent.mkdir(parents=True, exist_ok=True)
            write_status(out["status"], row.path, "corrupt NIfTI")
        else:
            _derivatives(root, row.path)
            write_status(out["status"], row.path, None)
        statuses.append(out["status"])
    samples.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    pd.DataFrame(columns=["subject", "session", "path", "reason"]).to_csv(tmp_path / "discovery_excluded.tsv", sep="\t", index=False)
    excluded, table = collect(tmp_path / "discovery_excluded.tsv", tmp_path / "samples.tsv", statuses, root, ["T1w", "fALFF"])
    assert table["sample"].tolist() == ["sub-A_ses-d0000_run-01__ses-d0000_run-01", "sub-B_ses-d0000_run-01__none",
                                        "sub-D_none__ses-d0000_run-01"]
    rows = table.set_index("sample").fillna("")
    b, d = rows.loc["sub-B_ses-d0000_run-01__none"], rows.loc["sub-D_none__ses-d0000_run-01"]
    assert b["T1w"].endswith("desc-brain_T1w.nii.gz") and b["mask_T1w"].endswith("desc-brainT1w_mask.nii.gz")
    assert b["fALFF"] == b["mask_fALFF"] == b["fALFF_qc"] == b["bold_session"] == ""
    assert d["T1w"] == d["T1w_qc"] == "" and d["fALFF"].endswith("desc-falff_boldmap.nii.gz")
    assert {c for c in table.columns if c.endswith(("_path", "_sidecar"))} == set()
    reasons = excluded.groupby("subject")["reason"].apply(list).to_dict()
    assert reasons["C"] == ["corrupt NIfTI", "sample sub-C_ses-d0000_run-01__none: every scan of it was excluded in preprocessing",
                            "no usable sample left after preprocessing"]
    assert reasons["A"] == reasons["B"] == ["corrupt NIfTI"]  # only the failed scan; the subjects stay


def test_collect_names_a_missing_output_of_a_scan_that_is_not_excluded(tmp_path):
    scans = pd.DataFrame([scan("A", "d0000", "T1w"), scan("A", "d0000", "bold")])
    samples = build_samples(scans, clinical(tmp_path, {"A": "HC"}), ["T1w", "bold"]).samples
    _derivatives(tmp_path, scans.path[0])
    no_exclusions = pd.DataFrame(columns=["subject", "session", "path", "reason"])
    with pytest.raises(FileNotFoundError, match=r"_bold.nii.gz: missing or empty preprocessed file"):
        preproc_samples(samples, tmp_path, no_exclusions, ["T1w", "fALFF"])
    # with ALFF among the sources, the BOLD run's ALFF map must be there too
    _derivatives(tmp_path, scans.path[1])
    with pytest.raises(FileNotFoundError, match="desc-alff_boldmap"):
        preproc_samples(samples, tmp_path, no_exclusions, ["T1w", "fALFF", "ALFF"])
    _derivatives(tmp_path, scans.path[1], alff=True)
    table, lost = preproc_samples(samples, tmp_path, no_exclusions, ["T1w", "fALFF", "ALFF"])
    assert table.loc[0, "ALFF"].endswith("desc-alff_boldmap.nii.gz") and table.loc[0, "mask_ALFF"] == table.loc[0, "mask_fALFF"]
    assert lost.empty


@pytest.mark.parametrize("sources,message", [
    (["T1w", "PD"], "datasets.oasis.sources.1: 'PD' is not allowed; expected one of ['T1w', 'T2w', 'FLAIR', 'fALFF', 'ALFF']"),
    (["T1w", "T1w"], "datasets.oasis.sources: ['T1w', 'T1w'] has non-unique elements"),
    ([], "datasets.oasis.sources: [] should be non-empty"),
])
def test_a_bad_sources_entry_is_a_config_error_naming_the_key(sources, message):
    config = {"datasets": {"oasis": {"kind": "bids_mri", "synthetic": {}, "sources": sources}}}
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert message in str(error.value)


def test_sources_default_to_t1w_and_falff_from_the_schema():
    config = validate({"datasets": {"oasis": {"kind": "bids_mri", "synthetic": {}}}})
    assert config["datasets"]["oasis"]["sources"] == ["T1w", "fALFF"]

"""BIDS discovery over zero-byte trees (dry-run style), clinical matching, labels and samples."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmssl.bids.layout import Selection, discover, find_sidecar, parse_bids_name, session_days
from mmssl.bids.clinical import (
    PairingSettings,
    apply_label_rule,
    build_samples,
    read_clinical,
    require_subjects_per_class,
    sample_columns,
)
from mmssl.schema import schema_defaults
from mmssl.bids.commands import add_commands
from mmssl.errors import NotEnoughSubjectsError

T1_BOLD = ["T1w", "bold"]  # the raw modalities of the default sources [T1w, fALFF]


def touch(root: Path, *relative: str) -> None:
    """Create zero-byte files (images and sidecars alike: discovery must not open them)."""
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def oasis_tree(root: Path) -> Path:
    """OASIS-3 as downloaded: several sessions and runs, sidecars beside images, a T2w, one
    subject without BOLD, one with nothing usable (a task-nback run only)."""
    touch(root, "dataset_description.json", "participants.tsv")
    a, b = "sub-OAS30001/ses-d0129", "sub-OAS30001/ses-d1500"
    touch(root,
          f"{a}/anat/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz", f"{a}/anat/sub-OAS30001_ses-d0129_run-01_T1w.json",
          f"{a}/anat/sub-OAS30001_ses-d0129_run-02_T1w.nii.gz", f"{a}/anat/sub-OAS30001_ses-d0129_run-02_T1w.json",
          f"{a}/anat/sub-OAS30001_ses-d0129_acq-TSE_T2w.nii.gz",
          f"{a}/func/sub-OAS30001_ses-d0129_task-rest_run-01_bold.nii.gz", f"{a}/func/sub-OAS30001_ses-d0129_task-rest_run-01_bold.json",
          f"{a}/func/sub-OAS30001_ses-d0129_task-rest_run-02_bold.nii.gz", f"{a}/func/sub-OAS30001_ses-d0129_task-rest_run-02_bold.json",
          f"{b}/anat/sub-OAS30001_ses-d1500_run-01_T1w.nii.gz",
          f"{b}/func/sub-OAS30001_ses-d1500_task-rest_run-01_bold.nii.gz", f"{b}/func/sub-OAS30001_ses-d1500_task-rest_run-01_bold.json",
          "sub-OAS30002/ses-d0000/anat/sub-OAS30002_ses-d0000_run-01_T1w.nii.gz",
          "sub-OAS30002/ses-d0000/func/sub-OAS30002_ses-d0000_task-rest_run-01_bold.nii.gz",
          "sub-OAS30003/ses-d0042/anat/sub-OAS30003_ses-d0042_run-01_T1w.nii.gz",  # no BOLD
          "sub-OAS30004/ses-d0010/func/sub-OAS30004_ses-d0010_task-nback_run-01_bold.nii.gz")  # nothing usable
    return root


def _keys(scans: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    return {(r.subject, r.session, r.modality, r.run) for r in scans.itertuples()}


def test_oasis_multi_session_multi_run_tree_finds_exactly_the_expected_scans(tmp_path):
    result = discover(oasis_tree(tmp_path), T1_BOLD)
    expected = {
        ("OAS30001", "d0129", "T1w", "01"), ("OAS30001", "d0129", "T1w", "02"),
        ("OAS30001", "d0129", "bold", "01"), ("OAS30001", "d0129", "bold", "02"),
        ("OAS30001", "d1500", "T1w", "01"), ("OAS30001", "d1500", "bold", "01"),
        ("OAS30002", "d0000", "T1w", "01"), ("OAS30002", "d0000", "bold", "01"),
        ("OAS30003", "d0042", "T1w", "01"),  # a T1w and no BOLD: kept, it is a T1w-only sample later
    }
    assert _keys(result.scans) == expected
    row = result.scans.set_index(["subject", "session", "modality", "run"]).loc[("OAS30001", "d0129", "bold", "02")]
    assert row["days"] == 129.0 and row["key"] == "ses-d0129_run-02"
    assert row["sidecar"].endswith("sub-OAS30001_ses-d0129_task-rest_run-02_bold.json")
    assert result.scans.set_index(["subject", "session", "modality", "run"]).loc[("OAS30002", "d0000", "bold", "01"), "sidecar"] == ""
    excluded = result.excluded.set_index("path")["reason"].to_dict()
    nback = str(tmp_path / "sub-OAS30004/ses-d0010/func/sub-OAS30004_ses-d0010_task-nback_run-01_bold.nii.gz")
    assert excluded == {nback: "BOLD task-nback is not the resting-state task-rest (discover.filters.bold.task)",
                        str(tmp_path / "sub-OAS30004"): "no usable scan: no T1w run and no BOLD run (task-rest)"}
    # the T2w is found only when asked for; its key keeps its acq entity
    with_t2 = discover(tmp_path, ["T1w", "T2w", "bold"])
    assert _keys(with_t2.scans) == expected | {("OAS30001", "d0129", "T2w", "")}
    assert with_t2.scans.query("modality == 'T2w'")["key"].tolist() == ["ses-d0129_acq-TSE"]
    assert "no T1w run and no T2w run and no BOLD run (task-rest)" in with_t2.excluded["reason"].iloc[-1]


def test_clinica_style_sessions_without_top_level_description(tmp_path):
    # Clinica-converted: ses-M000/M006 labels, dataset_description.json only at session level, .nii files.
    for ses in ("M000", "M006"):
        touch(tmp_path, f"sub-ADNI011S0002/ses-{ses}/dataset_description.json",
              f"sub-ADNI011S0002/ses-{ses}/anat/sub-ADNI011S0002_ses-{ses}_T1w.nii",
              f"sub-ADNI011S0002/ses-{ses}/func/sub-ADNI011S0002_ses-{ses}_task-rest_bold.nii")
    scans = discover(tmp_path, T1_BOLD).scans
    assert len(scans) == 4 and set(scans["session"]) == {"M000", "M006"}
    assert set(scans["run"]) == {""} and set(scans["key"]) == {"ses-M000", "ses-M006"}
    assert sorted(scans["days"].unique()) == pytest.approx([0.0, 182.625])


def test_no_session_layout_inherited_sidecars_and_other_tasks(tmp_path):
    touch(tmp_path, "task-rest_bold.json",  # top level: applies to every rest BOLD without a nearer one
          "sub-01/anat/sub-01_T1w.nii.gz",
          "sub-01/func/sub-01_task-rest_bold.nii.gz",
          "sub-01/func/sub-01_task-nback_bold.nii.gz",
          "sub-02/sub-02_task-rest_bold.json",  # subject level: nearer than the top level
          "sub-02/anat/sub-02_T1w.nii.gz",
          "sub-02/func/sub-02_task-rest_run-1_bold.nii.gz",
          "sub-02/func/sub-02_task-rest_run-1_bold.nii")  # same entities, other extension
    result = discover(tmp_path, T1_BOLD)
    bold = result.scans[result.scans["modality"] == "bold"].set_index("subject")
    assert list(bold.index) == ["01", "02"]
    assert bold.loc["01", "sidecar"] == str(tmp_path / "task-rest_bold.json")
    # inheritance: every level that applies, root first (the nearer file's keys win the merge)
    assert bold.loc["02", "sidecar"] == f"{tmp_path / 'task-rest_bold.json'};{tmp_path / 'sub-02/sub-02_task-rest_bold.json'}"
    assert math.isnan(bold.loc["01", "days"]) and bold.loc["01", "session"] == ""
    reasons = dict(zip(result.excluded["path"].map(lambda p: Path(p).name), result.excluded["reason"]))
    assert "not the resting-state task-rest" in reasons["sub-01_task-nback_bold.nii.gz"]
    assert "duplicate" in next(r for n, r in reasons.items() if n.startswith("sub-02_task-rest_run-1_bold"))
    every_task = Selection.from_config({"filters": {"bold": {}}})
    assert len(discover(tmp_path, T1_BOLD, every_task).scans.query("modality == 'bold'")) == 3


def test_sidecar_inheritance_prefers_nearest_then_most_specific(tmp_path):
    touch(tmp_path, "task-rest_bold.json",
          "sub-1/ses-a/sub-1_ses-a_task-rest_bold.json",
          "sub-1/ses-a/func/sub-1_ses-a_task-rest_bold.json",
          "sub-1/ses-a/func/sub-1_ses-a_task-rest_run-02_bold.json",
          "sub-1/ses-a/func/sub-1_ses-a_task-rest_acq-x_bold.json",  # acq-x does not apply to these runs
          "sub-1/ses-a/func/sub-1_ses-a_task-rest_run-01_bold.nii.gz",
          "sub-1/ses-a/func/sub-1_ses-a_task-rest_run-02_bold.nii.gz")
    func = tmp_path / "sub-1/ses-a/func"
    assert find_sidecar(func / "sub-1_ses-a_task-rest_run-01_bold.nii.gz", tmp_path) == func / "sub-1_ses-a_task-rest_bold.json"
    assert find_sidecar(func / "sub-1_ses-a_task-rest_run-02_bold.nii.gz", tmp_path) == func / "sub-1_ses-a_task-rest_run-02_bold.json"


def test_parsing_helpers_and_clear_errors(tmp_path):
    name = parse_bids_name("sub-OAS30001_ses-d0129_task-rest_run-01_bold.nii.gz")
    assert name.subject == "OAS30001" and name.get("run") == "01" and name.suffix == "bold"
    assert parse_bids_name("notes.txt") is None and parse_bids_name("ses-1_T1w.nii.gz") is None
    assert session_days("d0129") == 129 and math.isnan(session_days("baseline"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nope", T1_BOLD)
    touch(tmp_path, "dataset_description.json")
    with pytest.raises(ValueError, match="no sub-"):
        discover(tmp_path, T1_BOLD)
    with pytest.raises(ValueError, match=r"modalities \['T1w', 'PD'\]: expected one or more of T1w, T2w, FLAIR, bold"):
        discover(tmp_path, ["T1w", "PD"])


# --- clinical matching, labels, samples ------------------------------------------------------------


def clinical_table(tmp_path: Path, rows: list[tuple], columns=("OASISID", "days_to_visit", "CDRTOT", "dx1", "age at visit", "M/F")) -> Path:
    path = tmp_path / "clinical.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def _scans(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """Scan rows (subject, session, modality, run) as discover() returns them."""
    out = []
    for subject, session, modality, run in rows:
        out.append({"subject": subject, "session": session, "modality": modality, "run": run, "acq": "", "task": "rest",
                    "key": f"ses-{session}_run-{run}", "path": f"/bids/sub-{subject}/ses-{session}/{modality}_{run}",
                    "sidecar": "", "days": session_days(session)})
    return pd.DataFrame(out)


def test_label_rule_default_and_custom():
    cases = [
        (0.0, "Cognitively normal", "HC"), (0.5, "AD Dementia", "AD"), (1.0, "DAT", "AD"),
        (2.0, "Probable Alzheimer's disease", "AD"), (0.5, "uncertain dementia", "other"),
        (0.0, "AD Dementia", "other"),  # CDR 0 is not AD
        (math.nan, "Cognitively normal", "other"),  # missing CDR fails a CDR condition
        (1.0, "Non AD dem- Other primary", "other"), (0.5, "update pending", "other"),  # whole words only
    ]
    default_labels = schema_defaults("discover")["labels"]
    assert PairingSettings.from_config({}).labels == default_labels
    for cdr, dx, label in cases:
        assert apply_label_rule(cdr, dx, default_labels, "other") == label, (cdr, dx)
    custom = {"AD": {"cdr_above": 0.0}, "HC": {"cdr": [0]}}  # CDR only, first match wins
    assert [apply_label_rule(c, "", custom, "none") for c in (0, 0.5, math.nan)] == ["HC", "AD", "none"]
    with pytest.raises(ValueError, match=r"discover\.labels\.AD: .*'cdr_min' was unexpected.*allowed keys: cdr, cdr_above, dx_contains"):
        PairingSettings.from_config({"labels": {"AD": {"cdr_min": 1}}})


def test_nearest_visit_wins_and_sessions_outside_the_window_are_excluded_with_the_gap(tmp_path):
    clinical = read_clinical(clinical_table(tmp_path, [
        ("OAS30001", 0, 0.0, "Cognitively normal", 70.0, "F"),
        ("OAS30001", 380, 0.5, "AD Dementia", 71.0, "F"),
        ("OAS30001", 1500, 1.0, "AD Dementia", 74.1, "F"),
    ]))
    scans = _scans([("OAS30001", "d0400", "T1w", "01"), ("OAS30001", "d0400", "bold", "01"),
                    ("OAS30001", "d2000", "T1w", "01"), ("OAS30001", "d2000", "bold", "01"),
                    ("OAS30002", "d0000", "T1w", "01"), ("OAS30002", "d0000", "bold", "01")])
    result = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"window_days": 365}))
    assert result.subjects.to_dict("records") == [{"subject": "OAS30001", "label": "AD", "age": 71.0, "sex": "F", "n_samples": 1}]
    assert result.samples["sample"].tolist() == ["sub-OAS30001_ses-d0400_run-01__ses-d0400_run-01"]
    reasons = result.excluded.groupby(["subject", "session"])["reason"].first()
    assert reasons[("OAS30001", "d2000")] == "nearest clinical visit is 500 days away (window 365 days)"
    assert reasons[("OAS30002", "d0000")] == "subject not in the clinical table"
    assert len(result.excluded) == 4 + 1  # every unused scan, plus the subject left without samples
    assert result.excluded.query("session == ''")["subject"].tolist() == ["OAS30002"]
    wide = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"window_days": 600}))
    assert wide.samples["sample"].str.contains("d2000").sum() == 3 and wide.subjects.loc[0, "n_samples"] == 4


def test_pairing_all_same_session_and_visit(tmp_path):
    """all: every combination of a subject's scans (the paper's T1w x BOLD pairs);
    same_session / visit: combinations within a session / the sessions of one clinical
    visit, a modality missing there left empty rather than the scan dropped."""
    clinical = read_clinical(clinical_table(tmp_path, [
        ("A", 0, 0.0, "Cognitively normal", 70.0, "M"), ("A", 700, 0.0, "Cognitively normal", 72.0, "M"),
        ("B", 10, 1.0, "AD Dementia", 80.0, "F"), ("B", 400, 1.0, "AD Dementia", 81.0, "F"),
        ("C", 110, 0.0, "Cognitively normal", 66.0, "F"),
    ]))
    scans = _scans([("A", "d0000", "T1w", "01"), ("A", "d0000", "bold", "01"), ("A", "d0000", "bold", "02"),
                    ("A", "d0700", "T1w", "01"), ("A", "d0700", "bold", "01"),
                    ("B", "d0010", "T1w", "01"), ("B", "d0400", "bold", "01"),  # B: modalities in different sessions
                    ("C", "d0100", "T1w", "01"), ("C", "d0130", "bold", "01")])  # C: two sessions, one visit (day 110)
    every = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"pairing": "all"}))
    assert every.subjects.set_index("subject")["n_samples"].to_dict() == {"A": 6, "B": 1, "C": 1}
    assert sorted(every.samples.query("subject == 'A'")["days_gap"]) == [0, 0, 0, 700, 700, 700]
    assert every.excluded.empty
    same = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"pairing": "same_session"}))
    assert same.subjects.set_index("subject")["n_samples"].to_dict() == {"A": 3, "B": 2, "C": 2}
    assert set(same.samples["days_gap"]) == {0}
    b = same.samples.query("subject == 'B'").set_index("sample")
    assert list(b.index) == ["sub-B_ses-d0010_run-01__none", "sub-B_none__ses-d0400_run-01"]
    assert b.loc["sub-B_ses-d0010_run-01__none", "bold_path"] == "" and b.loc["sub-B_none__ses-d0400_run-01", "T1w_path"] == ""
    assert np.isnan(b.loc["sub-B_ses-d0010_run-01__none", "bold_days"]) and same.excluded.empty  # nothing dropped
    visit = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"pairing": "visit"}))
    assert visit.subjects.set_index("subject")["n_samples"].to_dict() == {"A": 3, "B": 2, "C": 1}
    assert visit.samples.query("subject == 'C'")["sample"].tolist() == ["sub-C_ses-d0100_run-01__ses-d0130_run-01"]
    assert list(every.samples.columns) == sample_columns(T1_BOLD) == [
        "sample", "subject", "label", "age", "sex", "days_gap", "T1w_session", "T1w_run", "T1w_days", "T1w_path",
        "T1w_sidecar", "bold_session", "bold_run", "bold_days", "bold_path", "bold_sidecar", "bold_RepetitionTime",
        "bold_RepetitionTime_file"]
    with pytest.raises(ValueError, match="pairing: 'nearest' is not allowed"):
        PairingSettings.from_config({"pairing": "nearest"})


def test_subject_label_first_or_last_and_alternative_column_names(tmp_path):
    path = clinical_table(tmp_path, [("sub-C", 0, 0.0, "Cognitively normal", 66.0, "female"),
                                     ("sub-C", 1000, 1.0, "AD Dementia", np.nan, "female")],
                          columns=("Subject", "days_to_visit", "cdr", "dx1", "AgeatEntry", "sex"))
    clinical = read_clinical(path)
    scans = _scans([("C", "d0000", "T1w", "01"), ("C", "d0000", "bold", "01"),
                    ("C", "d1000", "T1w", "01"), ("C", "d1000", "bold", "01")])
    first = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"subject_label": "first"}))
    last = build_samples(scans, clinical, T1_BOLD, PairingSettings.from_config({"subject_label": "last"}))
    assert (first.subjects.loc[0, "label"], last.subjects.loc[0, "label"]) == ("HC", "AD")
    assert set(first.samples["label"]) == {"HC"}  # every sample carries the subject's label
    assert first.subjects.loc[0, "sex"] == "F" and first.subjects.loc[0, "age"] == pytest.approx(66.0)
    # No age-at-visit column: age at entry (given in one row only) + session days / 365.25.
    assert last.subjects.loc[0, "age"] == pytest.approx(66.0 + 1000 / 365.25)
    with pytest.raises(ValueError, match="no days column"):
        read_clinical(clinical_table(tmp_path, [("X", 1)], columns=("OASISID", "visit")))


def test_age_from_age_at_entry_when_no_age_at_visit(tmp_path):
    path = clinical_table(tmp_path, [("D", 0, 0.0, "Cognitively normal", 70.0), ("D", 730, 0.0, "Cognitively normal", 70.0)],
                          columns=("OASISID", "days_to_visit", "CDRTOT", "dx1", "AgeatEntry"))
    scans = _scans([("D", "d0731", "T1w", "01"), ("D", "d0731", "bold", "01")])
    subjects = build_samples(scans, read_clinical(path), T1_BOLD).subjects
    assert subjects.loc[0, "age"] == pytest.approx(70.0 + 731 / 365.25) and subjects.loc[0, "sex"] == ""


def test_too_few_subjects_per_class_stops_with_the_counts():
    subjects = pd.DataFrame({"subject": list("abcde"), "label": ["HC", "HC", "HC", "AD", "other"]})
    require_subjects_per_class(subjects, ("HC", "AD"), 1)
    with pytest.raises(NotEnoughSubjectsError, match=r"\{'HC': 3, 'AD': 1\} remain, need at least 2"):
        require_subjects_per_class(subjects, ("HC", "AD"), 2, dataset="oasis3")


def test_discover_command_dry_run_over_a_zero_byte_tree(tmp_path):
    bids = oasis_tree(tmp_path / "bids")
    clinical = clinical_table(tmp_path, [("OAS30001", 100, 0.0, "Cognitively normal", 70.0, "M"),
                                         ("OAS30001", 1400, 0.5, "AD Dementia", 73.6, "M"),
                                         ("OAS30002", 30, 1.0, "DAT", 80.0, "F"),
                                         ("OAS30003", 0, 0.0, "Cognitively normal", 60.0, "F")])
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    out = tmp_path / "results"
    args = parser.parse_args(["discover", "--bids-dir", str(bids), "--clinical", str(clinical),
                              "--settings-json", '{"window_days": 365, "pairing": "all"}', "--dataset", "oasis",
                              "--sources", "T1w", "fALFF",
                              "--out-subjects", str(out / "subjects.tsv"), "--out-samples", str(out / "samples.tsv"),
                              "--out-excluded", str(out / "excluded.tsv")])
    assert args.func(args) == 0
    subjects = pd.read_csv(out / "subjects.tsv", sep="\t")
    samples = pd.read_csv(out / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    excluded = pd.read_csv(out / "excluded.tsv", sep="\t", dtype=str)
    assert subjects.set_index("subject")[["label", "n_samples"]].to_dict("index") == {
        "OAS30001": {"label": "HC", "n_samples": 9},  # 3 T1w x 3 BOLD
        "OAS30002": {"label": "AD", "n_samples": 1}, "OAS30003": {"label": "HC", "n_samples": 1}}
    assert len(samples) == 11 and samples["T1w_run"].isin(["01", "02"]).all()  # run labels stay strings
    # the subject with a T1w and no BOLD run is a sample with its BOLD columns empty, not an exclusion
    t1_only = samples.query("subject == 'OAS30003'").iloc[0]
    assert t1_only["sample"] == "sub-OAS30003_ses-d0042_run-01__none" and t1_only["T1w_path"].endswith("_T1w.nii.gz")
    assert t1_only["bold_path"] == t1_only["bold_session"] == t1_only["bold_run"] == ""
    assert set(excluded["subject"]) == {"OAS30004"}  # only the subject with nothing usable
    assert not list(out.glob(".tmp*"))


def write_json(root: Path, rel: str, data: dict) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_one_scan_per_acquisition_echo_phase_variants_and_derivatives(tmp_path):
    """Shapes of bids-examples ds210 (multi-echo rest with per-echo top-level sidecars),
    qmri (part-phase), ds004332 / ds005 (rec-, acq- and ce- variants of one T1w) and a raw
    tree that keeps derivatives inside it (space-, desc-)."""
    for echo, te in ((1, 0.0125), (2, 0.0305), (3, 0.0485)):
        write_json(tmp_path, f"task-rest_echo-{echo}_bold.json", {"RepetitionTime": 2.47, "EchoTime": te})
        touch(tmp_path, f"sub-01/func/sub-01_task-rest_run-01_echo-{echo}_bold.nii.gz")
    touch(tmp_path,
          "sub-01/func/sub-01_task-rest_run-02_part-mag_bold.nii.gz", "sub-01/func/sub-01_task-rest_run-02_part-phase_bold.nii.gz",
          "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_rec-norm_T1w.nii.gz", "sub-01/anat/sub-01_ce-gadolinium_T1w.nii.gz",
          "sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz",
          "sub-01/func/sub-01_task-rest_run-01_space-MNI_desc-preproc_bold.nii.gz",
          "sub-02/anat/sub-02_rec-orig_T1w.nii.gz", "sub-02/anat/sub-02_rec-norm_T1w.nii.gz")
    write_json(tmp_path, "task-rest_bold.json", {"RepetitionTime": 2.47})
    result = discover(tmp_path, T1_BOLD)
    scans = result.scans.assign(name=result.scans["path"].map(lambda p: Path(p).name)).set_index("name")
    assert sorted(scans.index) == ["sub-01_T1w.nii.gz", "sub-01_task-rest_run-01_echo-2_bold.nii.gz",
                                   "sub-01_task-rest_run-02_part-mag_bold.nii.gz", "sub-02_rec-norm_T1w.nii.gz"]
    assert scans.loc["sub-01_task-rest_run-01_echo-2_bold.nii.gz", "RepetitionTime"] == 2.47
    reasons = {Path(p).name: r for p, r in zip(result.excluded["path"], result.excluded["reason"])}
    assert reasons["sub-01_task-rest_run-01_echo-1_bold.nii.gz"] == (
        "not chosen: sub-01_task-rest_run-01_echo-2_bold.nii.gz was chosen for this acquisition "
        "(discover.select.echo_time 0.03 s is nearest EchoTime 0.0305)")
    assert reasons["sub-01_task-rest_run-02_part-phase_bold.nii.gz"] == "part-phase is not a magnitude image"
    assert reasons["sub-01_ce-gadolinium_T1w.nii.gz"].endswith("(discover.select.prefer.ce ranks ce-(absent) first)")
    assert reasons["sub-01_rec-norm_T1w.nii.gz"].endswith("(discover.select.prefer.rec ranks rec-(absent) first)")
    assert reasons["sub-02_rec-orig_T1w.nii.gz"].endswith("(discover.select.prefer.rec ranks rec-norm first)")
    assert reasons["sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz"] == (
        "derivative entity space-MNI152NLin2009cAsym, desc-preproc in the raw tree (a derivative, not a raw scan)")
    assert reasons["sub-01_task-rest_run-01_space-MNI_desc-preproc_bold.nii.gz"].startswith("derivative entity space-MNI")
    assert len(reasons) == 8  # every file left out is listed: 2 echoes, phase, ce, 2 rec, 2 derivatives
    # the lowest echo when asked so; every file of a slot competes under the declared rule
    lowest = discover(tmp_path, T1_BOLD, Selection.from_config({"select": {"echo_time": None}})).scans
    assert lowest["path"].str.endswith("echo-1_bold.nii.gz").sum() == 1


def test_sparse_acquisitions_and_unreadable_sidecars_are_excluded_with_the_file_named(tmp_path):
    """bids-examples volume_timing: VolumeTiming instead of RepetitionTime (a sparse
    acquisition) is never given the header's TR."""
    touch(tmp_path, "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/func/sub-01_task-rest_acq-dense_bold.nii.gz",
          "sub-01/func/sub-01_task-rest_acq-sparse_bold.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz",
          "sub-02/func/sub-02_task-rest_bold.nii.gz")
    write_json(tmp_path, "sub-01/func/sub-01_task-rest_acq-dense_bold.json", {"RepetitionTime": 2.0})
    write_json(tmp_path, "sub-01/func/sub-01_task-rest_acq-sparse_bold.json", {"VolumeTiming": [0, 3, 6], "SliceTiming": [0, 1]})
    (tmp_path / "sub-02/func/sub-02_task-rest_bold.json").write_text("{not json")
    result = discover(tmp_path, T1_BOLD)
    reasons = {Path(p).name: r for p, r in zip(result.excluded["path"], result.excluded["reason"])}
    assert reasons["sub-01_task-rest_acq-sparse_bold.nii.gz"].startswith("irregular sampling: VolumeTiming in ")
    assert reasons["sub-02_task-rest_bold.nii.gz"].startswith(f"sidecar {tmp_path / 'sub-02/func/sub-02_task-rest_bold.json'} cannot be read as JSON")
    assert result.scans.query("modality == 'bold'")["path"].map(lambda p: Path(p).name).tolist() == ["sub-01_task-rest_acq-dense_bold.nii.gz"]


def test_entity_filters_per_suffix(tmp_path):
    touch(tmp_path, "sub-01/anat/sub-01_acq-MPRAGE_T1w.nii.gz", "sub-01/anat/sub-01_acq-fast_T1w.nii.gz",
          "sub-01/func/sub-01_task-rest_acq-fullbrain_run-1_bold.nii.gz", "sub-01/func/sub-01_task-rest_acq-prefrontal_bold.nii.gz")
    selection = Selection.from_config({"filters": {"T1w": {"acq": ["MPRAGE"]}, "bold": {"task": "rest", "acq": "fullbrain", "run": True}}})
    result = discover(tmp_path, T1_BOLD, selection)
    assert sorted(Path(p).name for p in result.scans["path"]) == ["sub-01_acq-MPRAGE_T1w.nii.gz",
                                                                  "sub-01_task-rest_acq-fullbrain_run-1_bold.nii.gz"]
    reasons = dict(zip(result.excluded["path"].map(lambda p: Path(p).name), result.excluded["reason"]))
    assert reasons["sub-01_acq-fast_T1w.nii.gz"] == "discover.filters.T1w.acq: acq-fast is not one of ['MPRAGE']"
    assert reasons["sub-01_task-rest_acq-prefrontal_bold.nii.gz"] == "discover.filters.bold.acq: acq-prefrontal is not one of ['fullbrain']"
    absent = discover(tmp_path, T1_BOLD, Selection.from_config({"filters": {"bold": {"run": False}}}))
    assert absent.scans.query("modality == 'bold'")["path"].str.endswith("acq-prefrontal_bold.nii.gz").all()


def test_a_failed_discovery_keeps_every_reason_in_its_log(tmp_path, capsys):
    touch(tmp_path / "bids", "sub-01/anat/sub-01_T1w.nii.gz")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["discover", "--bids-dir", str(tmp_path / "bids"), "--settings-json", "{}", "--dataset", "mine",
                              "--sources", "T1w", "fALFF", "--exclude-participant-label", "01",
                              "--out-subjects", str(out / "subjects.tsv"), "--out-samples", str(out / "samples.tsv"),
                              "--out-excluded", str(out / "excluded.tsv"), "--log-excluded", str(tmp_path / "log.tsv")])
    with pytest.raises(ValueError, match=r"dataset 'mine': no usable subject .*check datasets\.mine\.bids_dir, \.sources, "
                                         r"\.discover\.filters, \.discover\.participant_label"):
        args.func(args)
    assert f"1 exclusion(s) with their reasons: {tmp_path / 'log.tsv'}" in capsys.readouterr().err
    kept = pd.read_csv(tmp_path / "log.tsv", sep="\t", dtype=str)
    assert kept["reason"].tolist() == ["in exclude_participant_label"]

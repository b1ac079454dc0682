"""BIDS discovery over zero-byte trees (dry-run style), clinical matching, labels and pairing."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmssl.preprocess.bids import discover, find_sidecar, parse_bids_name, session_days
from mmssl.preprocess.clinical import (
    PairingSettings,
    apply_label_rule,
    build_pairs,
    read_clinical,
    require_subjects_per_class,
)
from mmssl.schema import schema_defaults
from mmssl.preprocess.commands import add_commands
from mmssl.preprocess.errors import NotEnoughSubjectsError


def touch(root: Path, *relative: str) -> None:
    """Create zero-byte files (images and sidecars alike: discovery must not open them)."""
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def oasis_tree(root: Path) -> Path:
    """OASIS-3 as downloaded: several sessions and runs, sidecars beside images, one subject without BOLD."""
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
          "sub-OAS30003/ses-d0042/anat/sub-OAS30003_ses-d0042_run-01_T1w.nii.gz")  # no BOLD
    return root


def _keys(scans: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    return {(r.subject, r.session, r.modality, r.run) for r in scans.itertuples()}


def test_oasis_multi_session_multi_run_tree_finds_exactly_the_expected_scans(tmp_path):
    result = discover(oasis_tree(tmp_path))
    assert _keys(result.scans) == {
        ("OAS30001", "d0129", "T1w", "01"), ("OAS30001", "d0129", "T1w", "02"),
        ("OAS30001", "d0129", "bold", "01"), ("OAS30001", "d0129", "bold", "02"),
        ("OAS30001", "d1500", "T1w", "01"), ("OAS30001", "d1500", "bold", "01"),
        ("OAS30002", "d0000", "T1w", "01"), ("OAS30002", "d0000", "bold", "01"),
    }
    row = result.scans.set_index(["subject", "session", "modality", "run"]).loc[("OAS30001", "d0129", "bold", "02")]
    assert row["days"] == 129.0 and row["key"] == "ses-d0129_run-02"
    assert row["sidecar"].endswith("sub-OAS30001_ses-d0129_task-rest_run-02_bold.json")
    assert result.scans.set_index(["subject", "session", "modality", "run"]).loc[("OAS30002", "d0000", "bold", "01"), "sidecar"] == ""
    excluded = result.excluded
    assert set(excluded["subject"]) == {"OAS30003"}
    assert (excluded["reason"] == "no BOLD run (task-rest)").sum() == 1
    assert excluded["path"].str.endswith("sub-OAS30003_ses-d0042_run-01_T1w.nii.gz").sum() == 1


def test_clinica_style_sessions_without_top_level_description(tmp_path):
    # Clinica-converted: ses-M000/M006 labels, dataset_description.json only at session level, .nii files.
    for ses in ("M000", "M006"):
        touch(tmp_path, f"sub-ADNI011S0002/ses-{ses}/dataset_description.json",
              f"sub-ADNI011S0002/ses-{ses}/anat/sub-ADNI011S0002_ses-{ses}_T1w.nii",
              f"sub-ADNI011S0002/ses-{ses}/func/sub-ADNI011S0002_ses-{ses}_task-rest_bold.nii")
    scans = discover(tmp_path).scans
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
    result = discover(tmp_path)
    bold = result.scans[result.scans["modality"] == "bold"].set_index("subject")
    assert list(bold.index) == ["01", "02"]
    assert bold.loc["01", "sidecar"] == str(tmp_path / "task-rest_bold.json")
    assert bold.loc["02", "sidecar"] == str(tmp_path / "sub-02/sub-02_task-rest_bold.json")
    assert math.isnan(bold.loc["01", "days"]) and bold.loc["01", "session"] == ""
    reasons = dict(zip(result.excluded["path"].map(lambda p: Path(p).name), result.excluded["reason"]))
    assert "not the resting-state task-rest" in reasons["sub-01_task-nback_bold.nii.gz"]
    assert "duplicate" in next(r for n, r in reasons.items() if n.startswith("sub-02_task-rest_run-1_bold"))
    assert len(discover(tmp_path, bold_task=None).scans.query("modality == 'bold'")) == 3


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
        discover(tmp_path / "nope")
    touch(tmp_path, "dataset_description.json")
    with pytest.raises(ValueError, match="no sub-"):
        discover(tmp_path)


# --- clinical matching, labels, pairs ------------------------------------------------------------


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
    result = build_pairs(scans, clinical, PairingSettings.from_config({"window_days": 365}))
    assert result.subjects.to_dict("records") == [{"subject": "OAS30001", "label": "AD", "age": 71.0, "sex": "F", "n_pairs": 1}]
    assert result.pairs["pair_id"].tolist() == ["sub-OAS30001_ses-d0400_run-01__ses-d0400_run-01"]
    reasons = result.excluded.groupby(["subject", "session"])["reason"].first()
    assert reasons[("OAS30001", "d2000")] == "nearest clinical visit is 500 days away (window 365 days)"
    assert reasons[("OAS30002", "d0000")] == "subject not in the clinical table"
    assert len(result.excluded) == 4 + 1  # every unused scan, plus the subject left without pairs
    assert result.excluded.query("session == ''")["subject"].tolist() == ["OAS30002"]
    wide = build_pairs(scans, clinical, PairingSettings.from_config({"window_days": 600}))
    assert wide.pairs["pair_id"].str.contains("d2000").sum() == 3 and wide.subjects.loc[0, "n_pairs"] == 4


def test_pairing_all_versus_same_session_counts(tmp_path):
    clinical = read_clinical(clinical_table(tmp_path, [
        ("A", 0, 0.0, "Cognitively normal", 70.0, "M"), ("A", 700, 0.0, "Cognitively normal", 72.0, "M"),
        ("B", 10, 1.0, "AD Dementia", 80.0, "F"), ("B", 400, 1.0, "AD Dementia", 81.0, "F"),
    ]))
    scans = _scans([("A", "d0000", "T1w", "01"), ("A", "d0000", "bold", "01"), ("A", "d0000", "bold", "02"),
                    ("A", "d0700", "T1w", "01"), ("A", "d0700", "bold", "01"),
                    ("B", "d0010", "T1w", "01"), ("B", "d0400", "bold", "01")])  # B: modalities in different sessions
    every = build_pairs(scans, clinical, PairingSettings.from_config({"pairing": "all"}))
    assert every.subjects.set_index("subject")["n_pairs"].to_dict() == {"A": 6, "B": 1}
    assert sorted(every.pairs.query("subject == 'A'")["days_gap"]) == [0, 0, 0, 700, 700, 700]
    same = build_pairs(scans, clinical, PairingSettings.from_config({"pairing": "same_session"}))
    assert same.subjects.set_index("subject")["n_pairs"].to_dict() == {"A": 3}
    assert set(same.pairs["days_gap"]) == {0}
    b_rows = same.excluded.query("subject == 'B'")
    assert "no session with both T1w and BOLD (pairing same_session)" in set(b_rows["reason"]) and len(b_rows) == 3
    assert list(every.pairs.columns[:11]) == ["pair_id", "subject", "t1_session", "t1_run", "t1_path", "bold_session",
                                              "bold_run", "bold_path", "bold_sidecar", "label", "days_gap"]


def test_subject_label_first_or_last_and_alternative_column_names(tmp_path):
    path = clinical_table(tmp_path, [("sub-C", 0, 0.0, "Cognitively normal", 66.0, "female"),
                                     ("sub-C", 1000, 1.0, "AD Dementia", np.nan, "female")],
                          columns=("Subject", "days_to_visit", "cdr", "dx1", "AgeatEntry", "sex"))
    clinical = read_clinical(path)
    scans = _scans([("C", "d0000", "T1w", "01"), ("C", "d0000", "bold", "01"),
                    ("C", "d1000", "T1w", "01"), ("C", "d1000", "bold", "01")])
    first = build_pairs(scans, clinical, PairingSettings.from_config({"subject_label": "first"}))
    last = build_pairs(scans, clinical, PairingSettings.from_config({"subject_label": "last"}))
    assert (first.subjects.loc[0, "label"], last.subjects.loc[0, "label"]) == ("HC", "AD")
    assert set(first.pairs["label"]) == {"HC"}  # every pair carries the subject's label
    assert first.subjects.loc[0, "sex"] == "F" and first.subjects.loc[0, "age"] == pytest.approx(66.0)
    # No age-at-visit column: age at entry (given in one row only) + session days / 365.25.
    assert last.subjects.loc[0, "age"] == pytest.approx(66.0 + 1000 / 365.25)
    with pytest.raises(ValueError, match="no days column"):
        read_clinical(clinical_table(tmp_path, [("X", 1)], columns=("OASISID", "visit")))


def test_age_from_age_at_entry_when_no_age_at_visit(tmp_path):
    path = clinical_table(tmp_path, [("D", 0, 0.0, "Cognitively normal", 70.0), ("D", 730, 0.0, "Cognitively normal", 70.0)],
                          columns=("OASISID", "days_to_visit", "CDRTOT", "dx1", "AgeatEntry"))
    scans = _scans([("D", "d0731", "T1w", "01"), ("D", "d0731", "bold", "01")])
    subjects = build_pairs(scans, read_clinical(path)).subjects
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
                              "--out-subjects", str(out / "subjects.tsv"), "--out-pairs", str(out / "pairs.tsv"),
                              "--out-excluded", str(out / "excluded.tsv")])
    assert args.func(args) == 0
    subjects = pd.read_csv(out / "subjects.tsv", sep="\t")
    pairs = pd.read_csv(out / "pairs.tsv", sep="\t", dtype=str)
    excluded = pd.read_csv(out / "excluded.tsv", sep="\t", dtype=str)
    assert subjects.set_index("subject")[["label", "n_pairs"]].to_dict("index") == {
        "OAS30001": {"label": "HC", "n_pairs": 9}, "OAS30002": {"label": "AD", "n_pairs": 1}}  # 3 T1w x 3 BOLD
    assert len(pairs) == 10 and pairs["t1_run"].isin(["01", "02"]).all()  # run labels stay strings
    assert set(excluded["subject"]) == {"OAS30003"}
    assert not list(out.glob(".tmp*"))

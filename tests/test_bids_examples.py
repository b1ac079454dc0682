"""Discovery on public BIDS datasets nobody here wrote, with pybids as the oracle.

The datasets are pybids' own test layouts (ds005: one session, 16 subjects, three T1w
variants in one of them; 7t_trt: two sessions labelled 1 and 2, TR only in top-level
sidecars, a partial-coverage acq-prefrontal run; synthetic: every image as .nii and
.nii.gz, rest and n-back runs; ds000117: MEG+MRI with a sub-emptyroom), fetched from PyPI
by ``make bids-examples`` (pybids' sdist, checked by hash). The expected counts below were
written by hand from the layouts; pybids says which files exist, what their entities are and
what metadata the inheritance principle gives them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
import pytest

from mmssl.bids.layout import Selection, Sidecars, discover, parse_bids_name
from mmssl.bids.commands import add_commands
from mmssl.bids.discovery import NothingToUseError, require_usable, run_discovery

EXAMPLES = Path(__file__).resolve().parent / "data" / "bids-examples"
RAW = ["T1w", "bold"]


def example(name: str) -> Path:
    root = EXAMPLES / name
    if not (EXAMPLES / ".complete").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{EXAMPLES} is missing: `make test` fetches it (make bids-examples)")
        pytest.skip(f"{EXAMPLES} is missing: run `make bids-examples`")
    return root


@pytest.fixture(scope="module")
def bids_layout():
    bids = pytest.importorskip("bids")
    cache: dict[str, object] = {}

    def layout(name: str):
        if name not in cache:
            cache[name] = bids.BIDSLayout(str(example(name)), validate=False, derivatives=False)
        return cache[name]

    return layout


# by hand from each layout: (sources, subjects, T1w scans, BOLD scans, samples, files "not chosen")
EXPECTED = {
    # 16 subjects with a T1w; sub-12 also has acq-MPRAGE and acq-MP2RAGE: one slot, the plain one chosen
    "ds005": (["T1w"], 16, 16, 0, 16, 2),
    # T1w in ses-1 only; per session fullbrain run-1, run-2 and prefrontal (its own acquisition, no run)
    # sessions 1 and 2 carry no date: pairing within the session: ses-1 3 T1w+BOLD, ses-2 3 BOLD-only
    "7t_trt": (["T1w", "fALFF"], 10, 10, 60, 60, 0),
    # two sessions x (T1w, rest BOLD), each as .nii and .nii.gz: one kept, the other a duplicate
    "synthetic": (["T1w", "fALFF"], 5, 10, 10, 10, 0),
    # two subjects with acq-mprage T1w; sub-emptyroom (MEG only) has nothing usable
    "ds000117": (["T1w"], 2, 2, 0, 2, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_discovery_counts_match_the_layout_and_pybids(name, bids_layout):
    sources, n_subjects, n_t1w, n_bold, n_samples, n_not_chosen = EXPECTED[name]
    root = example(name)
    found = run_discovery(root, None, {}, sources)
    require_usable(found, sources, {}, name)
    scans = discover(root, [m for m in RAW if m == "T1w" or "fALFF" in sources]).scans
    assert found.subjects["subject"].nunique() == n_subjects
    assert (scans["modality"] == "T1w").sum() == n_t1w and (scans["modality"] == "bold").sum() == n_bold
    assert len(found.samples) == n_samples and found.samples["sample"].is_unique
    reasons = found.excluded["reason"]
    assert reasons.str.startswith("not chosen").sum() == n_not_chosen
    # pybids' count: subjects with a T1w image or a resting-state BOLD run
    layout = bids_layout(name)
    nifti = [".nii", ".nii.gz"]
    with_t1w = set(layout.get_subjects(suffix="T1w", extension=nifti))
    with_rest = set(layout.get_subjects(suffix="bold", task="rest", extension=nifti)) if "fALFF" in sources else set()
    assert set(found.subjects["subject"]) == with_t1w | with_rest


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entities_and_inherited_metadata_of_every_file_used_equal_pybids(name, bids_layout):
    root = example(name)
    layout = bids_layout(name)
    scans = discover(root, RAW, Selection.from_config({"filters": {"bold": {}}})).scans  # every task: more files
    sidecars = Sidecars(root)
    assert len(scans) > 0
    for row in scans.itertuples(index=False):
        path = Path(row.path)
        oracle = layout.parse_file_entities(str(path))
        ours = parse_bids_name(path.name)
        assert ours.subject == oracle["subject"] and ours.suffix == oracle["suffix"]
        assert ours.get("ses") == oracle.get("session", "") and ours.get("task") == oracle.get("task", "")
        assert ours.get("acq") == oracle.get("acquisition", "")
        if ours.get("run"):
            assert int(ours.get("run")) == int(oracle["run"])
        merged, _, _ = sidecars.metadata(path)
        # pybids leaves out keys whose value is JSON null (ds005's NullTestMetadata); nothing here reads one
        assert {k: v for k, v in merged.items() if v is not None} == layout.get_metadata(str(path)), path.name
        if row.modality == "bold":
            assert row.RepetitionTime == layout.get_metadata(str(path))["RepetitionTime"]


def test_tr_comes_from_the_top_level_sidecar_by_inheritance():
    # 7t_trt: each run's own JSON holds EchoTime only; RepetitionTime 3.0 is in the top-level
    # task-rest_acq-fullbrain_bold.json
    root = example("7t_trt")
    samples = run_discovery(root, None, {}, ["T1w", "fALFF"]).samples
    run1 = samples[samples["bold_path"].str.endswith("sub-01_ses-1_task-rest_acq-fullbrain_run-1_bold.nii.gz")]
    assert set(run1["bold_RepetitionTime"]) == {3.0}
    assert set(run1["bold_RepetitionTime_file"]) == {str(root.resolve() / "task-rest_acq-fullbrain_bold.json")}
    chain = run1["bold_sidecar"].iloc[0].split(";")
    assert [Path(p).name for p in chain] == ["task-rest_acq-fullbrain_bold.json", "sub-01_ses-1_task-rest_acq-fullbrain_run-1_bold.json"]
    # sessions without a date: no sample pairs ses-1's T1w with a ses-2 run, and none claims a gap of 0 across sessions
    assert set(samples["days_gap"]) == {0.0}
    across = run_discovery(root, None, {"pairing": "all"}, ["T1w", "fALFF"]).samples
    crossing = across[(across["T1w_session"] == "1") & (across["bold_session"] == "2")]
    assert len(crossing) == 30 and crossing["days_gap"].isna().all()


def test_default_sources_on_a_dataset_without_resting_bold_stop_discovery_naming_the_keys():
    with pytest.raises(NothingToUseError, match=r"source fALFF has no BOLD run \(task-rest\) in any subject; remove it "
                                                r"from datasets\.ds005\.sources or change datasets\.ds005\.discover\.filters\.bold"):
        require_usable(run_discovery(example("ds005"), None, {}, ["T1w", "fALFF"]), ["T1w", "fALFF"], {}, "ds005")


def test_variant_choice_lists_the_others_with_the_rule(tmp_path):
    reasons = run_discovery(example("ds005"), None, {}, ["T1w"]).excluded.set_index("path")["reason"]
    mp2rage = reasons[[p for p in reasons.index if p.endswith("sub-12_acq-MP2RAGE_T1w.nii.gz")][0]]
    assert mp2rage == ("not chosen: sub-12_T1w.nii.gz was chosen for this acquisition "
                       "(discover.select.prefer.acq ranks acq-(absent) first)")
    # the preference is the user's: MPRAGE first
    chosen = run_discovery(example("ds005"), None, {"select": {"prefer": {"acq": ["MPRAGE"]}}}, ["T1w"]).samples
    assert chosen.set_index("subject").loc["12", "T1w_path"].endswith("sub-12_acq-MPRAGE_T1w.nii.gz")


def test_participants_tsv_labels_and_participant_label_flags(tmp_path):
    root = example("7t_trt")
    settings = {"participants": {"label_column": "sex", "label_map": {"F": "HC", "M": "AD"}}}
    found = run_discovery(root, None, settings, ["T1w", "fALFF"])
    sexes = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str).set_index("participant_id")["sex"]
    expected = {sub.removeprefix("sub-"): {"F": "HC", "M": "AD"}[sex] for sub, sex in sexes.items()
                if (root / sub).is_dir()}  # the table lists 22 participants, the tree holds 10
    assert len(expected) == 10
    assert found.subjects.set_index("subject")["label"].to_dict() == expected
    # no label column: unlabelled subjects, still every sample
    assert set(run_discovery(root, None, {}, ["T1w", "fALFF"]).subjects["label"]) == {""}
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["discover", "--bids-dir", str(root), "--settings-json", "{}", "--dataset", "7t",
                              "--sources", "T1w", "fALFF", "--participant-label", "sub-01", "02",
                              "--out-subjects", str(out / "subjects.tsv"), "--out-samples", str(out / "samples.tsv"),
                              "--out-excluded", str(out / "excluded.tsv"), "--out-description", str(out / "dd.json")])
    assert args.func(args) == 0
    assert pd.read_csv(out / "subjects.tsv", sep="\t", dtype=str)["subject"].tolist() == ["01", "02"]
    excluded = pd.read_csv(out / "excluded.tsv", sep="\t", dtype=str)
    assert (excluded["reason"] == "not in participant_label").sum() == 8
    description = pd.read_json(out / "dd.json", typ="series")
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "mmssl"
    assert description["SourceDatasets"][0]["URL"] == root.resolve().as_uri()

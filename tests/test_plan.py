"""mmssl.plan and the dataset-kind registry (mmssl.data.kinds): what the rules read and pass,
decided by the registry entry of a dataset's kind, never by its name."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mmssl.data import kinds
from mmssl.data.kinds import KINDS, DatasetKind
from mmssl.plan import Plan
from mmssl.schema import load_schema


def plan_of(datasets: dict) -> Plan:
    config = {"results": "results", "methods": ["S"], "conda_torch": "cpu", "datasets": datasets}
    return Plan(config, samples_of=lambda dataset: f"results/{dataset}/samples.tsv")


def known(**over) -> dict:
    return {"kind": "synthetic_mri", "methods": ["random", "L-CS"], "folds": [0], "splits": {"n_folds": 2},
            "sources": ["T1w", "fALFF"], "size": 32, "maps": {"enabled": True}, "classes": ["HC", "AD"], **over}


def test_the_schemas_kinds_are_the_registrys():
    """A kind in the schema's enum without a registry entry (or the reverse) fails here,
    naming what to add."""
    enum = load_schema()["$defs"]["dataset"]["properties"]["kind"]["enum"]
    assert sorted(enum) == sorted(KINDS)


def test_a_new_dataset_kind_is_one_registry_entry(monkeypatch):
    """A kind the rules have never heard of, declared by one DatasetKind: its store, probe
    task, maps, factor recovery and the datasets each rule serves follow from the entry."""
    monkeypatch.setitem(KINDS, "toy_mri", DatasetKind(
        "toy_mri", prepare_rule="prepare_known_mri", splits_from="store", probe_task="binary", one_per_subject=False,
        maps=True, known_factors=True, preprocessed=False, folder_keys=(), labelled_by=()))
    plan = plan_of({"t": known(kind="toy_mri"), "d": {"kind": "two_view_mnist", "folds": [0], "splits": {"n_folds": 2}}})
    w = SimpleNamespace(dataset="t", method="L-CS", fold="0", source="T1w")
    assert plan.datasets_with(prepare_rule="prepare_known_mri") == "t"
    assert plan.datasets_with(splits_from="store") == "t|d" and plan.datasets_with(maps=True) == "t"
    assert plan.probe_task(w) == "binary" and plan.store(w) == "results/t/store"
    assert plan.recovery_inputs(w)["store"] == "results/t/store"
    results = plan.all_results()
    assert "results/t/recovery.md" in results and "results/t/maps/L-CS/fold0/T1w_desc-links_map.nii.gz" in results
    assert json.loads(plan.maps_grid(w)) == {"size": 32, "voxel_mm": 6.0}
    assert not any(r.startswith("results/d/maps") or r == "results/d/recovery.md" for r in results)


def test_the_preprocessed_kind_trains_on_a_store_per_fold_and_evaluates_one_sample_per_subject():
    plan = plan_of({"o": {"kind": "bids_mri", "folds": [0, 1], "splits": {"n_folds": 2}, "sources": ["T1w", "ALFF"],
                          "maps": {"enabled": True}, "synthetic": {"n_subjects": 12}}})
    w = SimpleNamespace(dataset="o", method="S", fold="1")
    assert plan.store(w) == "results/o/preproc/fold1/store" and plan.one_per_subject_flag(w) == "--one-per-subject"
    assert plan.datasets_with(splits_from="subjects") == "o" and plan.mri_datasets(with_alff=True) == "o"
    assert plan.mri_datasets(with_alff=False) == "(?!)"
    assert {"results/o/qc/qc.tsv", "results/o/excluded.tsv"} <= set(plan.all_results())


@pytest.mark.parametrize("spec,expected", [
    ({"kind": "bids_mri"}, False),
    ({"kind": "bids_mri", "clinical_csv": "c.csv"}, True),
    ({"kind": "bids_mri", "discover": {"participants": {"label_column": "group"}}}, True),
    ({"kind": "bids_mri", "discover": {"participants": {"label_column": None}}}, False),
    ({"kind": "bids_mri", "synthetic": {}}, True),
    ({"kind": "two_view_mnist"}, True),
])
def test_which_datasets_carry_labels(spec, expected):
    assert kinds.kind_of(spec).has_labels(spec) is expected


def test_a_bad_target_is_named():
    plan = plan_of({"t": known()})
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        plan.check_run(SimpleNamespace(dataset="nope", method="S", fold="0"))
    with pytest.raises(ValueError, match=r"fold 2 out of range: dataset t has splits.n_folds = 2 \(folds 0..1\)"):
        plan.check_run(SimpleNamespace(dataset="t", method="S", fold="2"))
    with pytest.raises(ValueError, match="no CL or CS part"):
        plan.links_inputs(SimpleNamespace(dataset="t", method="S", fold="0", source="T1w"))
    plan = plan_of({"d": {"kind": "two_view_mnist", "folds": [0], "splits": {"n_folds": 2}}})
    with pytest.raises(ValueError, match="factor recovery needs known generating factors"):
        plan.recovery_inputs(SimpleNamespace(dataset="d", method="S", fold="0"))

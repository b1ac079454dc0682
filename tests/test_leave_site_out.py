"""Leave-site-out folds: sites come from the BOLD sidecars and never straddle a fold."""

import json

import numpy as np
import pandas as pd
import pytest

from mmssl import cli
from mmssl.data.splits import SplitSettings, make_splits, subjects_table


def sited_subjects(n_sites=5, per_site=12):
    rows = []
    for s in range(n_sites):
        for i in range(per_site):
            rows.append({"subject": f"s{s}_{i}", "label": ["HC", "AD", "other"][i % 3], "site": f"site{s}"})
    return pd.DataFrame(rows)


def test_every_fold_tests_on_sites_it_never_trains_on():
    subjects = sited_subjects()
    folds = make_splits(subjects_table(subjects, "site"), SplitSettings(n_folds=5, test="fold", group_by="site"))
    tested = []
    for f in folds:
        test_sites = set(f.loc[f.split == "test", "site"])
        train_sites = set(f.loc[f.split.isin(["train", "val"]), "site"])
        assert test_sites and not test_sites & train_sites
        tested.append(test_sites)
    assert set.union(*tested) == set(subjects.site) and sum(map(len, tested)) == 5  # each site tested once


def test_without_grouping_sites_are_mixed():
    subjects = sited_subjects()
    f = make_splits(subjects_table(subjects), SplitSettings(n_folds=5, test="fold"))[0]
    assert set(f.loc[f.split == "test", "subject"].str[:2]) & set(f.loc[f.split == "train", "subject"].str[:2])


def test_grouping_errors_name_the_problem():
    subjects = sited_subjects(n_sites=3)
    with pytest.raises(ValueError, match="3 groups .* cannot make 5 folds"):
        make_splits(subjects_table(subjects, "site"), SplitSettings(n_folds=5, test="fold", group_by="site"))
    with pytest.raises(ValueError, match="no column 'scanner'"):
        subjects_table(subjects, "scanner")


def test_discovery_reads_the_site_from_bold_sidecars(tmp_path):
    bids, rows = tmp_path / "bids", []
    for i in range(4):
        sub, ses = f"OAS3{i:04d}", "d0100"
        for kind, name in (("anat", "run-01_T1w"), ("func", "task-rest_run-01_bold")):
            folder = bids / f"sub-{sub}" / f"ses-{ses}" / kind
            folder.mkdir(parents=True)
            (folder / f"sub-{sub}_ses-{ses}_{name}.nii.gz").touch()
        sidecar = bids / f"sub-{sub}" / f"ses-{ses}" / "func" / f"sub-{sub}_ses-{ses}_task-rest_run-01_bold.json"
        sidecar.write_text(json.dumps({"RepetitionTime": 2.2, "StationName": f"scanner{i % 2}"}))
        rows.append(f"{sub},100,70,0,Cognitively normal,F")
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("OASISID,days_to_visit,age at visit,CDRTOT,dx1,M/F\n" + "\n".join(rows) + "\n")
    out = {k: tmp_path / f"{k}.tsv" for k in ("subjects", "samples", "excluded")}
    code = cli.main(["discover", "--bids-dir", str(bids), "--clinical", str(clinical), "--dataset", "oasis",
                     "--settings-json", '{"site_key": "StationName"}', "--out-subjects", str(out["subjects"]),
                     "--sources", "T1w", "fALFF", "--out-samples", str(out["samples"]),
                     "--out-excluded", str(out["excluded"])])
    assert code == 0
    samples = pd.read_csv(out["samples"], sep="\t", dtype=str)
    subjects = pd.read_csv(out["subjects"], sep="\t", dtype=str)
    assert samples["site"].tolist() == ["scanner0", "scanner1", "scanner0", "scanner1"]
    assert np.array_equal(subjects.sort_values("subject")["site"], ["scanner0", "scanner1", "scanner0", "scanner1"])

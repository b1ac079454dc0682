"""The one table of modalities (mmssl.modalities): the config schema names what it holds,
the package's views of it agree with it, and a new structural modality (PDw) needs one
entry: paths, derivative names, QC tags and flags, discovery and collect take it as is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mmssl import paths
from mmssl.modalities import (
    MODALITIES,
    STRUCTURAL_PIPELINE,
    Modality,
    all_sources,
    is_structural_source,
    mask_column,
    modalities_of,
    modality,
    modality_of,
    source_columns,
    sources_of,
)
from mmssl.schema import load_schema


def schema_gaps() -> list[str]:
    """What the config schema lacks (or has too many of) for the table: one line per place,
    naming what to add or remove."""
    defs = load_schema()["$defs"]
    bids_mri = next(branch["then"]["properties"] for branch in _dataset_branches(load_schema())
                    if branch["if"]["properties"]["kind"].get("const") == "bids_mri")
    qc_keys = {k[len("min_similarity_"):] for k in defs["qc"]["properties"] if k.startswith("min_similarity_")}
    places = {
        "datasets.<bids_mri>.sources enum": (bids_mri["sources"]["items"]["enum"], list(all_sources())),
        "$defs.discover.filters propertyNames enum": (defs["discover"]["properties"]["filters"]["propertyNames"]["enum"],
                                                      list(MODALITIES)),
        "$defs.preprocess.header properties": (list(defs["preprocess"]["properties"]["header"]["properties"]), list(MODALITIES)),
        "$defs.qc min_similarity_<tag> keys": (sorted(qc_keys), sorted(m.tag for m in MODALITIES.values())),
    }
    gaps = []
    for place, (have, want) in places.items():
        if have != want:
            gaps.append(f"{place}: add {[w for w in want if w not in have]}, remove {[h for h in have if h not in want]}"
                        f" (want {want}, in the table's order)")
    return gaps


def _dataset_branches(schema: dict) -> list[dict]:
    """The per-kind if/then branches of a dataset's schema."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "if" in node and "then" in node and "kind" in node["if"].get("properties", {}):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def test_the_schema_names_exactly_the_modalities_of_the_table():
    assert schema_gaps() == []


def test_the_package_views_agree_with_the_table():
    assert paths.STRUCTURAL == ("T1w", "T2w", "FLAIR") and paths.FUNCTIONAL == ("fALFF", "ALFF")
    assert paths.SOURCES == all_sources() == ("T1w", "T2w", "FLAIR", "fALFF", "ALFF")
    assert paths.BOLD == "bold" and dict(paths.DATATYPE) == {"T1w": "anat", "T2w": "anat", "FLAIR": "anat", "bold": "func"}
    # modality = raw suffix, source = model input
    assert [modality_of(s).suffix for s in all_sources()] == ["T1w", "T2w", "FLAIR", "bold", "bold"]
    assert modalities_of(["T1w", "fALFF", "ALFF"]) == ["T1w", "bold"]
    assert sources_of("bold", ["fALFF", "T1w", "ALFF"]) == ["fALFF", "ALFF"] and modality_of("ALFF").suffix == "bold"
    with pytest.raises(ValueError, match="unknown source 'PD'; a source is one of T1w, T2w, FLAIR, fALFF, ALFF"):
        modality_of("PD")
    with pytest.raises(ValueError, match="unknown modality"):
        modality("fALFF")  # a source, not a modality
    # uniform QC tags: the suffix in lower case; epi for a BOLD run
    assert {s: m.tag for s, m in MODALITIES.items()} == {"T1w": "t1w", "T2w": "t2w", "FLAIR": "flair", "bold": "epi"}
    # the registration each pipeline uses is a preprocess settings key
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config({})
    assert {m.registration for m in MODALITIES.values()} <= set(vars(settings)) | {f for f in settings.__dataclass_fields__}
    assert set(settings.header) == set(MODALITIES)
    # one name for a source's mask column, in collect's and pack's tables alike
    assert mask_column("fALFF") == "mask_fALFF" and source_columns("T2w") == ("T2w", "mask_T2w", "T2w_qc")
    assert paths.alff_wanted(["T1w", "ALFF"]) and not paths.alff_wanted(["T1w", "fALFF"])
    assert paths.wildcard_structural(["FLAIR", "T1w", "fALFF", "T2w"]) == ["T1w", "T2w", "FLAIR"]


@pytest.fixture
def pdw(monkeypatch):
    """PDw, added the way a developer would: one structural entry in the table."""
    entry = Modality("PDw", "anat", ("PDw",), STRUCTURAL_PIPELINE, "registration")
    monkeypatch.setitem(MODALITIES, "PDw", entry)
    return entry


def test_a_new_structural_modality_takes_one_table_entry(pdw, tmp_path):
    # sources and modalities
    assert "PDw" in all_sources() and all_sources().index("PDw") < all_sources().index("fALFF")  # structural first
    assert modality_of("PDw") is pdw and modality_of("PDw").suffix == "PDw" and is_structural_source("PDw")
    assert modalities_of(["T1w", "PDw", "fALFF", "ALFF"]) == ["T1w", "PDw", "bold"]
    assert sources_of("PDw", ["T1w", "PDw", "fALFF"]) == ["PDw"] and paths.map_key("PDw") == "image"
    # file names: its own mask desc (it may share every entity of its session's T1w) and xfm
    assert paths.DATATYPE["PDw"] == "anat" and "PDw" in paths.DATATYPE
    assert paths.wildcard_structural(["T1w", "PDw"]) == ["T1w", "PDw"]  # the rules' {suffix} job makes it
    pattern = paths.scan_derivatives(tmp_path, "{suffix}", "sub-01_ses-A_run-01", folder="sub-01/ses-A")
    assert {k: p.format(suffix="PDw") for k, p in pattern.items()} == paths.scan_derivatives(tmp_path, "PDw", "sub-01_ses-A_run-01")
    raw = "/bids/sub-01/ses-A/anat/sub-01_ses-A_run-01_PDw.nii.gz"
    assert paths.scan_prefix(raw) == ("PDw", "sub-01_ses-A_run-01")
    out = paths.derivatives_of(tmp_path, raw)
    assert set(out) == set(paths.derivative_specs("T1w")) == {"image", "mask", "xfm", "qc", "status"}
    names = {key: Path(p).name for key, p in out.items()}
    assert names == {
        "image": "sub-01_ses-A_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brain_PDw.nii.gz",
        "mask": "sub-01_ses-A_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brainPDw_mask.nii.gz",
        "xfm": "sub-01_ses-A_run-01_from-PDw_to-MNI152NLin2009aSym_mode-image_xfm.txt",
        "qc": "sub-01_ses-A_run-01_space-MNI152NLin2009aSym_desc-qc_PDw.json",
        "status": "sub-01_ses-A_run-01_desc-status_PDw.tsv",
    }
    assert all(Path(p).parent == tmp_path / "sub-01/ses-A/anat" for p in out.values())
    t1w = paths.derivatives_of(tmp_path, raw.replace("_PDw", "_T1w"))
    assert not set(out.values()) & set(t1w.values())  # nothing in common with the T1w of the same entities
    # QC: metric keys, flags, page columns, montage style
    from mmssl.preprocess.qc import QcThresholds, metric_columns, qc_flags, structural_metric_keys

    assert structural_metric_keys("PDw") == ("mask_volume_ml_pdw", "similarity_pdw", "registration_metric_pdw")
    assert metric_columns()[-2:] == ("mask_volume_ml_pdw", "similarity_pdw")
    # (its threshold min_similarity_pdw is a schema key: schema_gaps names it, below)
    thresholds = SimpleNamespace(**vars(QcThresholds.from_config({})), min_similarity_pdw=1.1)
    metrics = {"mask_volume_ml_t1w": 1500.0, "similarity_t1w": 1.3, "similarity_epi": 1.2, "falff_mean_in_brain": 0.5,
               "mask_volume_ml_pdw": 100.0, "similarity_pdw": 1.05}
    assert qc_flags(metrics, thresholds) == ["small_mask_pdw", "low_similarity_pdw"]
    # the schema places a new modality needs: named, so the failure says what to add
    gaps = schema_gaps()
    assert len(gaps) == 4 and all("add ['PDw']" in gap or "add ['pdw']" in gap for gap in gaps), gaps


def test_a_new_structural_modality_is_discovered_and_collected(pdw, tmp_path):
    from mmssl.bids.clinical import build_samples, read_clinical
    from mmssl.bids.collect import preproc_samples
    from mmssl.bids.layout import discover

    bids = tmp_path / "bids"
    for rel in ("dataset_description.json", "sub-01/ses-d0000/anat/sub-01_ses-d0000_run-01_T1w.nii.gz",
                "sub-01/ses-d0000/anat/sub-01_ses-d0000_run-01_PDw.nii.gz", "sub-02/ses-d0000/anat/sub-02_ses-d0000_run-01_PDw.nii.gz"):
        (bids / rel).parent.mkdir(parents=True, exist_ok=True)
        (bids / rel).touch()
    sources = ["T1w", "PDw"]
    found = discover(bids, modalities_of(sources))
    assert sorted(zip(found.scans["subject"], found.scans["modality"])) == [("01", "PDw"), ("01", "T1w"), ("02", "PDw")]
    visits = tmp_path / "clinical.csv"
    pd.DataFrame([{"OASISID": s, "days_to_visit": 0, "CDRTOT": 0.0, "dx1": "Cognitively normal", "age at visit": 70.0,
                   "M/F": "F"} for s in ("01", "02")]).to_csv(visits, index=False)
    samples = build_samples(found.scans, read_clinical(visits), modalities_of(sources)).samples
    assert list(samples["PDw_path"].map(lambda p: Path(p).name)) == ["sub-01_ses-d0000_run-01_PDw.nii.gz",
                                                                      "sub-02_ses-d0000_run-01_PDw.nii.gz"]
    preproc = tmp_path / "preproc"
    for raw in (p for column in ("T1w_path", "PDw_path") for p in samples[column] if p):
        for path in paths.derivatives_of(preproc, raw).values():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("x")
    table, lost = preproc_samples(samples, preproc, pd.DataFrame(columns=["subject", "session", "path", "reason"]), sources)
    assert lost.empty and len(table) == 2
    assert [c for c in table.columns if "PDw" in c][:3] == ["PDw", "mask_PDw", "PDw_qc"]
    assert table.loc[table.subject == "02", "PDw"].item().endswith("desc-brain_PDw.nii.gz")
    assert table.loc[table.subject == "02", "mask_PDw"].item().endswith("desc-brainPDw_mask.nii.gz")
    assert table.loc[table.subject == "02", "T1w"].item() == ""
    assert np.array_equal(table["subject"].to_numpy(), np.array(["01", "02"], dtype=object))

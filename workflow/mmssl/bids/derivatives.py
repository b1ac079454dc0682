"""The ``dataset_description.json`` that makes ``results/{dataset}/preproc`` a
BIDS-derivatives dataset (BIDS spec: derivatives must declare ``GeneratedBy`` and should
declare ``SourceDatasets``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmssl.io import write_json
from mmssl.version import code_url, package_version

BIDS_VERSION = "1.10.0"


def dataset_description(bids_dir: str | Path, dataset: str) -> dict[str, Any]:
    """The derivatives' description: name, BIDS version, DatasetType, GeneratedBy (name,
    version, code URL) and SourceDatasets (the raw dataset's path, with its DOI and version
    when its own dataset_description.json gives them)."""
    source: dict[str, Any] = {"URL": Path(bids_dir).resolve().as_uri()}
    raw = Path(bids_dir) / "dataset_description.json"
    try:
        text = raw.read_text() if raw.is_file() else ""
        described = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        described = {}
    if isinstance(described, dict):
        source |= {key: described[key] for key in ("DatasetDOI", "Name") if key in described}
        if "DatasetDOI" in source:
            source["DOI"] = source.pop("DatasetDOI")
    return {
        "Name": f"mmssl preprocessing of {dataset}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mmssl", "Version": package_version(), "CodeURL": code_url(),
                         "Description": "brain-masked, MNI-registered structural volumes and fALFF/ALFF maps (3 mm grid)"}],
        "SourceDatasets": [source],
    }


def write_dataset_description(path: str | Path, bids_dir: str | Path, dataset: str) -> Path:
    return write_json(dataset_description(bids_dir, dataset), path)

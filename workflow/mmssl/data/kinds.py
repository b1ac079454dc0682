"""The dataset kinds: one registry entry says everything the workflow needs to know about a
kind (config key ``datasets.<name>.kind``).

Rules and code ask :data:`KINDS` (through :func:`kind_of` or :func:`names_with`) instead of
comparing kind names: adding a kind is one :class:`DatasetKind` entry here, its schema branch
(workflow/schemas/config.schema.yaml, whose ``kind`` enum ``tests/test_config_schema.py``
checks against this table) and the rules that build its store.

Modelled on solo-learn's explicit method dict: a plain mapping, read top to bottom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ProbeTask = Literal["binary", "multiclass"]


@dataclass(frozen=True)
class DatasetKind:
    """What the workflow does with a dataset of this kind.

    - ``prepare_rule``: the rule that writes its one store (``results/{dataset}/store``);
      None for a kind whose stores are packed per fold from preprocessed scans.
    - ``splits_from``: the folds are cut from the store's index (``store``) or, before any
      store exists, from the preprocessed samples table (``subjects``).
    - ``probe_task``: ``binary`` (the two ``classes``, Optuna-tuned logistic probe) or
      ``multiclass`` (every label, the paper's linear layer).
    - ``one_per_subject``: samples per subject may be several (sessions); evaluation takes one.
    - ``maps``: brain maps can be drawn (volumes on an MNI grid).
    - ``known_factors``: the store's index holds the generating factors (factor recovery).
    - ``preprocessed``: raw scans go through discovery, per-scan preprocessing and QC
      (``qc/qc.tsv`` and ``excluded.tsv`` are among its results).
    - ``folder_keys``: the config keys naming raw-data folders, quoted by a download error.
    - ``labelled_by``: the config keys any of which labels the subjects; empty: always labelled.
    """

    # no defaults: every entry of KINDS states every answer
    name: str
    prepare_rule: str | None
    splits_from: Literal["store", "subjects"]
    probe_task: ProbeTask
    one_per_subject: bool
    maps: bool
    known_factors: bool
    preprocessed: bool
    folder_keys: tuple[str, ...]
    labelled_by: tuple[str, ...]

    def store_per_fold(self) -> bool:
        """Whether each fold has its own store: histogram standardisation fitted on the
        fold's training subjects (the preprocessed kinds)."""
        return self.prepare_rule is None

    def has_labels(self, spec: Mapping[str, Any]) -> bool:
        """Whether a dataset of this kind, configured as ``spec``, labels its subjects: a
        kind with ``labelled_by`` needs one of those keys set (a dotted key reads nested
        sections: ``discover.participants.label_column``)."""
        return not self.labelled_by or any(_lookup(spec, key) not in (None, "", False) for key in self.labelled_by)

    def grid(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The MNI grid of the stored volumes ({size, voxel_mm}); only for kinds with maps."""
        if not self.maps:
            raise ValueError(f"kind {self.name!r} stores no volumes on an MNI grid")
        if self.preprocessed:
            return dict(spec["preprocess"]["grid"])
        from mmssl.data.known_mri import FIELD_OF_VIEW_MM

        return {"size": spec["size"], "voxel_mm": FIELD_OF_VIEW_MM / spec["size"]}


def _lookup(spec: Mapping[str, Any], dotted: str) -> Any:
    value: Any = spec
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


KINDS: dict[str, DatasetKind] = {
    "two_view_mnist": DatasetKind(
        "two_view_mnist", prepare_rule="prepare_two_view", splits_from="store", probe_task="multiclass",
        one_per_subject=False, maps=False, known_factors=False, preprocessed=False, folder_keys=("path",),
        labelled_by=()),
    "mnist_svhn": DatasetKind(
        "mnist_svhn", prepare_rule="prepare_mnist_svhn", splits_from="store", probe_task="multiclass",
        one_per_subject=False, maps=False, known_factors=False, preprocessed=False,
        folder_keys=("mnist_path", "svhn_path"), labelled_by=()),
    "synthetic_mri": DatasetKind(
        "synthetic_mri", prepare_rule="prepare_known_mri", splits_from="store", probe_task="binary",
        one_per_subject=False, maps=True, known_factors=True, preprocessed=False, folder_keys=(), labelled_by=()),
    "bids_mri": DatasetKind(
        "bids_mri", prepare_rule=None, splits_from="subjects", probe_task="binary", one_per_subject=True, maps=True,
        known_factors=False, preprocessed=True, folder_keys=(),
        labelled_by=("clinical_csv", "synthetic", "discover.participants.label_column")),
}


def kind_of(spec: Mapping[str, Any]) -> DatasetKind:
    """The registry entry of a dataset's ``kind``."""
    try:
        return KINDS[spec["kind"]]
    except KeyError:
        raise ValueError(f"unknown dataset kind {spec.get('kind')!r}; kinds: {', '.join(KINDS)}") from None


def names_with(datasets: Mapping[str, Mapping[str, Any]], **attributes: Any) -> list[str]:
    """The datasets whose kind has every given attribute value (``maps=True``,
    ``prepare_rule="prepare_two_view"``), in config order."""
    return [name for name, spec in datasets.items()
            if all(getattr(kind_of(spec), key) == value for key, value in attributes.items())]

"""Loading and validating config.yaml, and the per-dataset view of its sections.

The schema (workflow/schemas/config.schema.yaml) describes every section and carries every
default (the settings dataclasses have none: see :func:`section_values`). A dataset may
override keys of ``model``, ``train``, ``probe`` and ``similarity``; the merged section is
validated against the same definition, so a typo in an override is caught with its full
key path. :func:`validate` is the one check of a whole config.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from mmssl.data.kinds import kind_of
from mmssl.schema import ConfigError, section_values, validate_against

SECTIONS = ("model", "train", "probe", "similarity")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """The one check of a whole config: the schema (every section; defaults filled in, in
    place), then what the schema cannot express (e.g. ``falff.band``'s order,
    ``preprocess.motion_correction`` needing the fsl backend), by building every
    ``bids_mri`` dataset's settings. Raises ConfigError naming the key."""
    _check_scheduler_keys(config)  # before the defaults are filled in: it asks what the user set
    validate_against(config)
    _check_dataset_sections(config)
    _check_mri_values(config)
    _check_known_mri(config)
    return config


def _check_dataset_sections(config: dict[str, Any]) -> None:
    """Every dataset's merged sections, methods and folds, built once at load: a wrong
    override (``datasets.X.train.epochs: ten``) is named before any rule asks for it."""
    for name in config.get("datasets", {}):
        for section in SECTIONS:
            dataset_section(config, name, section)
        dataset_methods(config, name)
        dataset_folds(config, name)


def _check_known_mri(config: dict[str, Any]) -> None:
    """A known-factor dataset's ``missing`` may name only its ``sources``."""
    for name, spec in config.get("datasets", {}).items():
        if not kind_of(spec).known_factors:
            continue
        unknown = sorted(set(spec.get("missing", {})) - set(spec.get("sources", [])))
        if unknown:
            raise ConfigError(f"datasets.{name}.missing names {unknown}, which are not among datasets.{name}.sources "
                              f"{spec.get('sources')}")


def _check_scheduler_keys(config: dict[str, Any]) -> None:
    """A training setting with no effect under the chosen scheduler is an error naming the
    one that applies: ``max_lr`` set (globally or for a dataset) where a dataset trains
    with ``scheduler: none``, whose learning rate is ``lr`` throughout."""
    glob = config.get("train") if isinstance(config.get("train"), dict) else {}
    datasets = config.get("datasets") if isinstance(config.get("datasets"), dict) else {}
    for name, spec in datasets.items():
        own = spec.get("train") if isinstance(spec, dict) and isinstance(spec.get("train"), dict) else {}
        scheduler = own.get("scheduler", glob.get("scheduler", "onecycle"))
        if scheduler != "none":
            continue
        where = "datasets." + name + ".train.max_lr" if "max_lr" in own else "train.max_lr" if "max_lr" in glob else None
        if where:
            raise ConfigError(f"{where} has no effect: dataset {name} trains with train.scheduler: none, whose learning "
                              "rate is train.lr throughout; remove max_lr, or set train.lr")


def _check_mri_values(config: dict[str, Any]) -> None:
    """Build the ``preprocess``, ``falff`` and ``discover`` settings of every preprocessed
    (``bids_mri``) dataset (already schema-valid and default-filled), so a value the schema cannot judge
    stops the workflow before any job, named by its dataset and section."""
    mri = {name: spec for name, spec in config.get("datasets", {}).items() if kind_of(spec).preprocessed}
    if not mri:
        return  # the imports below pull in SimpleITK, nibabel and pandas
    from mmssl.bids.discovery import check_discover_settings
    from mmssl.preprocess.falff import FalffSettings
    from mmssl.preprocess.settings import MriSettings

    builders = (("preprocess", MriSettings.from_config), ("falff", FalffSettings.from_config),
                ("discover", check_discover_settings))
    for name, spec in mri.items():
        labelled_by_visits = bool(spec.get("clinical_csv")) or spec.get("synthetic") is not None
        if spec.get("discover", {}).get("pairing") == "visit" and not labelled_by_visits:
            raise ConfigError(f"datasets.{name}.discover.pairing: visit matches clinical visits and needs "
                              f"datasets.{name}.clinical_csv; use auto, all or same_session")
        for section, build in builders:
            try:
                build(spec.get(section, {}))
            except (ValueError, TypeError) as err:
                raise ConfigError(f"datasets.{name}.{section}: {err}") from err


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    config = yaml.safe_load(path.read_text()) or {}
    config = deep_merge(config, overrides or {})
    return validate(config)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dataset_section(config: dict[str, Any], dataset: str, section: str) -> dict[str, Any]:
    """The global ``section`` with the dataset's overrides, validated."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"unknown dataset {dataset!r}; configured: {', '.join(config['datasets'])}")
    merged = deep_merge(config.get(section, {}), config["datasets"][dataset].get(section, {}))
    return section_values(section, merged, f"datasets.{dataset}.{section}")


def dataset_methods(config: dict[str, Any], dataset: str) -> list[str]:
    from mmssl.objectives import check_method_name

    methods = config["datasets"][dataset].get("methods", config["methods"])
    for m in methods:
        try:
            check_method_name(m)
        except ValueError as err:
            raise ConfigError(f"datasets.{dataset}.methods: {err}") from err
    return list(methods)


def dataset_folds(config: dict[str, Any], dataset: str) -> list[int]:
    """The folds a dataset runs (``folds``; every fold of ``splits.n_folds`` by default), each checked."""
    spec = config["datasets"][dataset]
    folds = spec.get("folds", list(range(spec["splits"]["n_folds"])))
    for fold in folds:
        check_fold(config, dataset, fold, key=f"datasets.{dataset}.folds: ")
    return list(folds)


def check_fold(config: dict[str, Any], dataset: str, fold: int, key: str = "") -> None:
    """The one check of a fold number against the dataset's ``splits.n_folds`` (schema-filled)."""
    n = config["datasets"][dataset]["splits"]["n_folds"]
    if not 0 <= fold < n:
        raise ConfigError(f"{key}fold {fold} out of range: dataset {dataset} has splits.n_folds = {n} (folds 0..{n - 1})")

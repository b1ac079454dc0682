"""Loading and validating config.yaml, and the per-dataset view of its sections.

The schema (workflow/schemas/config.schema.yaml) carries the defaults of the global
sections. A dataset may override keys of ``model``, ``train``, ``probe`` and
``similarity``; the merged section is validated against the same definition, so a typo
in an override is caught with its full key path.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
SECTIONS = ("model", "train", "probe", "similarity")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


@functools.cache
def load_schema() -> dict[str, Any]:
    """The parsed schema, read once per process (callers must not modify it): the DAG asks
    for a dataset section per job, and re-parsing the YAML cost 0.1 s each time."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _describe(err: jsonschema.ValidationError, prefix: str) -> str:
    path = ".".join(str(p) for p in (prefix, *err.absolute_path) if p != "")
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"{path or 'config'}: {err.message}; allowed keys: {', '.join(allowed)}"
    if err.validator == "enum":
        return f"{path}: {err.instance!r} is not allowed; expected one of {err.validator_value}"
    return f"{path or 'config'}: {err.message}"


def _with_defaults(validator_class):
    """A validator that fills in ``default`` values while validating, as
    snakemake.utils.validate(set_default=True) does (the jsonschema FAQ recipe)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate(config: dict[str, Any], schema: dict[str, Any] | None = None, prefix: str = "") -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults from the schema, and raise a
    ConfigError naming the offending key and what is allowed."""
    schema = schema or load_schema()
    best = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if best is not None:
        raise ConfigError(_describe(best, prefix))
    for _ in _with_defaults(jsonschema.Draft202012Validator)(schema).iter_errors(config):
        pass  # already validated above; this pass only fills defaults
    return config


def check_mri_sections(config: dict[str, Any]) -> None:
    """Build the ``preprocess`` and ``falff`` settings of every ``bids_mri`` dataset, so a
    wrong key or value there stops the workflow before any job (the schema leaves these
    sections open; their dataclasses know the keys)."""
    from mmssl.preprocess.falff import FalffSettings
    from mmssl.preprocess.settings import MriSettings

    for name, spec in config.get("datasets", {}).items():
        if spec.get("kind") != "bids_mri":
            continue
        for section, build in (("preprocess", MriSettings.from_config), ("falff", FalffSettings.from_mapping)):
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
    validate(config)
    check_mri_sections(config)
    return config


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
    schema = load_schema()
    sub = {"$defs": schema["$defs"], **schema["$defs"][section]}
    return validate(merged, sub, prefix=f"datasets.{dataset}.{section}")


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
    spec = config["datasets"][dataset]
    n = spec.get("splits", {}).get("n_folds", 5)
    folds = spec.get("folds", list(range(n)))
    bad = [k for k in folds if k >= n]
    if bad:
        raise ConfigError(f"datasets.{dataset}.folds: {bad} out of range for splits.n_folds = {n} (folds are 0..{n - 1})")
    return list(folds)

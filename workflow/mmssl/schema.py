"""The config schema (workflow/schemas/config.schema.yaml): reading it, validating against
it while filling in its defaults, and the defaults of any of its sections. Every default
of every section lives in the schema; the settings dataclasses read theirs from here
(:func:`section_values`, :func:`schema_defaults`). This module imports nothing from
``mmssl``, so any settings module may use it without an import circle.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


@functools.cache
def load_schema() -> dict[str, Any]:
    """The parsed schema, read once per process (callers must not modify it): the DAG asks
    for a dataset section per job, and re-parsing the YAML cost 0.1 s each time."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _describe(err: Any, prefix: str) -> str:
    """One line for a jsonschema ValidationError: the key path and what is allowed."""
    path = ".".join(str(p) for p in (prefix, *err.absolute_path) if p != "")
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"{path or 'config'}: {err.message}; allowed keys: {', '.join(allowed)}"
    if err.validator == "enum":
        return f"{path}: {err.instance!r} is not allowed; expected one of {err.validator_value}"
    return f"{path or 'config'}: {err.message}"


def _with_defaults(validator_class):
    """A validator that fills in ``default`` values while validating, as
    snakemake.utils.validate(set_default=True) does (the jsonschema FAQ recipe). A tuple
    counts as an array, so library callers may pass ``{"band": (0.01, 0.08)}``."""
    import jsonschema

    check_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    type_checker = validator_class.TYPE_CHECKER.redefine(
        "array", lambda checker, instance: isinstance(instance, (list, tuple)))
    return jsonschema.validators.extend(validator_class, {"properties": set_defaults}, type_checker=type_checker)


@functools.cache
def _filling_validator() -> Any:
    # jsonschema is imported on first use: it costs 0.2 s of every CLI start-up, and most
    # commands get their settings already validated and filled by the workflow
    import jsonschema

    return _with_defaults(jsonschema.Draft202012Validator)


def validate_against(config: dict[str, Any], schema: dict[str, Any] | None = None, prefix: str = "") -> dict[str, Any]:
    """Validate ``config`` in place against ``schema`` (default: the whole config schema),
    filling in defaults, and raise a ConfigError naming the offending key (after ``prefix``)
    and what is allowed. One pass of the default-filling validator: the defaults it fills
    are valid, so filling while validating reports the same errors."""
    import jsonschema

    best = jsonschema.exceptions.best_match(_filling_validator()(schema or load_schema()).iter_errors(config))
    if best is not None:
        raise ConfigError(_describe(best, prefix))
    return config


def _definition(name: str) -> dict[str, Any]:
    """The schema's ``$defs[name]`` as a schema of its own (its ``$ref``s still resolve);
    a dotted name goes into its properties ("train.augment", "probe.multiclass")."""
    schema = load_schema()
    head, *rest = name.split(".")
    if head not in schema["$defs"]:
        raise KeyError(f"the config schema has no definition {head!r}; definitions: {sorted(schema['$defs'])}")
    sub = schema["$defs"][head]
    for part in rest:
        sub = sub["properties"][part]
    return {"$defs": schema["$defs"], **sub}


@functools.cache
def _filled_definition(name: str) -> dict[str, Any]:
    return validate_against({}, _definition(name), prefix=name)


def schema_defaults(name: str) -> dict[str, Any]:
    """The fully default-filled value of the schema's ``$defs[name]`` (e.g. "preprocess",
    "registration_epi", "falff", "discover"): ``{}`` validated with defaults, nested
    sections included. A fresh copy the caller may modify."""
    return copy.deepcopy(_filled_definition(name))


def section_values(name: str, cfg: Mapping[str, Any] | None, section: str | None = None) -> dict[str, Any]:
    """``cfg`` (left unmodified; None = {}) with the defaults of the schema's ``$defs[name]``
    filled in for every key it leaves out, validated against that definition: the one way a
    settings dataclass gets its values. A wrong key or value raises ConfigError (a
    ValueError) naming ``section`` (default ``name``) and the key, e.g.
    ``preprocess.registration: Additional properties are not allowed ('bin' was unexpected);
    allowed keys: ...``."""
    values = copy.deepcopy(cfg) if cfg is not None else {}
    if isinstance(values, Mapping) and not isinstance(values, dict):
        values = dict(values)
    return validate_against(values, _definition(name), prefix=section or name)



"""The config schema is the one home of the bids_mri sections' defaults (preprocess, falff,
discover): the settings dataclasses carry none, take every value from the schema, and
``mmssl.config.validate`` vets a whole config in one call."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmssl.config import validate
from mmssl.schema import ConfigError, load_schema, schema_defaults
from mmssl.settings import schema_default
from mmssl.bids.layout import DEFAULT_SESSION_DAY_PATTERNS
from mmssl.bids.clinical import ClinicalColumns, PairingSettings
from mmssl.bids.layout import Selection
from mmssl.bids.discovery import day_patterns, discover_values
from mmssl.preprocess.falff import FalffSettings
from mmssl.preprocess.header import HeaderLimits
from mmssl.preprocess.masking import MaskSettings
from mmssl.preprocess.qc import QcThresholds
from mmssl.preprocess.registration import RegistrationSettings
from mmssl.preprocess.settings import MriSettings
from mmssl.preprocess.spatial import GridSettings

ROOT = Path(__file__).resolve().parents[1]


def _epi(cfg):
    return RegistrationSettings.from_config(cfg, schema="registration_epi", section="preprocess.registration_epi")


# (schema definition, settings class, how the code builds it from a config mapping)
SECTIONS = [
    ("preprocess", MriSettings, MriSettings.from_config),
    ("registration", RegistrationSettings, RegistrationSettings.from_config),
    ("registration_epi", RegistrationSettings, _epi),
    ("grid", GridSettings, GridSettings.from_config),
    ("brain_mask", MaskSettings, MaskSettings.from_config),
    ("qc", QcThresholds, QcThresholds.from_config),
    ("falff", FalffSettings, FalffSettings.from_config),
    ("discover", PairingSettings, PairingSettings.from_config),
    ("clinical_columns", ClinicalColumns, ClinicalColumns.from_config),
]
# the discover keys that are not PairingSettings': file selection (Selection), sites, session days, participants
DISCOVERY_KEYS = {"site_key", "session_day_patterns", "filters", "select", "participant_label", "exclude_participant_label",
                  "participants"}
MRI_DEFS = ["preprocess", "registration", "registration_epi", "grid", "brain_mask", "qc", "header_T1w", "header_bold",
            "falff", "discover", "clinical_columns"]


def plain(value: Any) -> Any:
    """A settings value as the schema writes it: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize("name,cls,build", SECTIONS, ids=[s[0] for s in SECTIONS])
def test_settings_from_an_empty_section_are_the_schema_defaults(name, cls, build):
    defaults = schema_defaults(name)
    assert build({}) == build(defaults) == build(None)
    expected = {k: v for k, v in defaults.items() if not (name == "discover" and k in DISCOVERY_KEYS)}
    if name == "discover":
        expected["columns"] = {k: list(v) for k, v in expected["columns"].items()}
    assert plain(build({})) == expected  # every field comes from the schema, and nothing else does


def settings_classes() -> list[type]:
    """Every settings dataclass of the package: the ones built from a schema section."""
    from mmssl.augment import AugmentSettings
    from mmssl.data.splits import SplitSettings
    from mmssl.evaluate.probe import LinearProbeSettings, TunedProbeSettings
    from mmssl.evaluate.similarity import SimilaritySettings
    from mmssl.objectives.base import ModelSettings
    from mmssl.train.loop import TrainSettings

    return sorted({s[1] for s in SECTIONS} | {AugmentSettings, SplitSettings, LinearProbeSettings, TunedProbeSettings,
                                             SimilaritySettings, ModelSettings, TrainSettings, HeaderLimits}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", settings_classes(), ids=lambda c: c.__name__)
def test_no_settings_field_has_a_default_of_its_own(cls):
    """A field either has no default (its class is built from_config) or takes the
    schema's, read when the field is left out (mmssl.settings.schema_settings): no literal
    default can drift from the schema."""
    own = [f.name for f in dataclasses.fields(cls) if f.default is not MISSING
           or f.default_factory is not MISSING and getattr(f.default_factory, "func", None) is not schema_default]
    assert own == [], f"{cls.__name__}: defaults belong in the config schema, not in {own}"


def test_schema_backed_defaults_are_the_schemas():
    from mmssl.train.loop import TrainSettings

    train = schema_defaults("train")
    assert TrainSettings().epochs == train["epochs"] and TrainSettings(epochs=3).batch_size == train["batch_size"]
    assert QcThresholds() == QcThresholds.from_config({}) and GridSettings().size == schema_defaults("grid")["size"]


def test_registration_epi_has_its_own_full_defaults():
    t1, epi = schema_defaults("registration"), schema_defaults("registration_epi")
    assert set(t1) == set(epi) == {f.name for f in dataclasses.fields(RegistrationSettings)}
    assert {k for k in t1 if t1[k] != epi[k]} == {"bins", "smoothing_sigmas"}
    assert (epi["bins"], epi["smoothing_sigmas"]) == (16, [2.0, 1.0, 1.0])
    # a change to the EPI's registration starts from the EPI's defaults, not the T1w's
    settings = MriSettings.from_config({"registration_epi": {"iterations": 20}})
    assert settings.registration_epi == _epi({"iterations": 20})
    assert (settings.registration_epi.bins, settings.registration.iterations) == (16, 200)


def test_header_limits_defaults_per_kind_and_partial_overrides():
    header = MriSettings.from_config({}).header
    # T2w and FLAIR: 2D acquisitions with thick slices (OASIS-3: 4-5 mm), hence their own limits
    assert header == {"T1w": HeaderLimits((0.3, 3.0), (64, 512), 1.0), "bold": HeaderLimits((1.0, 6.0), (8, 256), 1.0),
                      "T2w": HeaderLimits((0.3, 6.0), (20, 512), 1.0), "FLAIR": HeaderLimits((0.3, 6.0), (20, 512), 1.0)}
    changed = MriSettings.from_config({"header": {"bold": {"shape": [4, 128]}}}).header
    assert changed["bold"] == HeaderLimits((1.0, 6.0), (4, 128), 1.0) and changed["T1w"] == header["T1w"]
    with pytest.raises(ValueError, match=r"preprocess\.header\.T1w: voxel_mm must be 0 < min <= max"):
        MriSettings.from_config({"header": {"T1w": {"voxel_mm": [3.0, 0.3]}}})
    with pytest.raises(ValueError, match=r"preprocess\.header: .*'flair' was unexpected.*allowed keys: FLAIR, T1w, T2w, bold"):
        MriSettings.from_config({"header": {"flair": {}}})


def test_discover_defaults_split_and_match_the_discovery_functions():
    values = discover_values({})
    assert values == discover_values(schema_defaults("discover"))
    assert values["site_key"] is None and day_patterns(values) == DEFAULT_SESSION_DAY_PATTERNS
    assert Selection.from_config({}) == Selection.from_config(values)
    assert Selection.from_config({}).filters == {"bold": {"task": "rest"}}
    assert DISCOVERY_KEYS | {f.name for f in dataclasses.fields(PairingSettings)} == set(schema_defaults("discover"))
    # a custom label list replaces the default rules (it is not merged into them)
    custom = {"AD": {"cdr_above": 0.5}}
    assert PairingSettings.from_config({"labels": custom}).labels == custom
    assert PairingSettings.from_config({"columns": {"subject": "ID"}}).columns.subject == ("ID",)
    with pytest.raises(ValueError, match=r"discover\.session_day_patterns: '\(' is not a regular expression"):
        discover_values({"session_day_patterns": [["(", 1.0]]})
    with pytest.raises(ValueError, match=r"discover\.columns: .*'subjects' was unexpected.*allowed keys: age, age_at_entry"):
        PairingSettings.from_config({"columns": {"subjects": "ID"}})


def test_settings_leave_the_given_mapping_alone_and_defaults_are_fresh_copies():
    cfg = {"registration": {"bins": 24}}
    MriSettings.from_config(cfg)
    assert cfg == {"registration": {"bins": 24}}
    schema_defaults("preprocess")["registration"]["bins"] = 0
    assert schema_defaults("preprocess")["registration"]["bins"] == 32


def _property_schemas(defs: dict, name: str):
    """(key path, property schema) of every key of definition ``name``, nested objects included."""
    for key, sub in defs[name].get("properties", {}).items():
        yield f"{name}.{key}", sub
        if sub.get("type") == "object" and "properties" in sub:
            yield from _property_schemas({"x": sub}, "x")


@pytest.mark.parametrize("name", MRI_DEFS)
def test_every_key_of_the_mri_sections_is_described_typed_and_has_a_default(name):
    defs = load_schema()["$defs"]
    assert defs[name].get("additionalProperties") is False and defs[name].get("description")
    for path, sub in _property_schemas(defs, name):
        target = defs[sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
        assert "default" in sub, f"{path}: no default"
        assert {"type", "enum"} & set(target), f"{path}: no type or allowed values"
        assert sub.get("description") or target.get("description"), f"{path}: no description"


def test_one_validate_call_fills_every_mri_default_and_names_a_typo_with_the_allowed_keys():
    config = yaml.safe_load((ROOT / ".test" / "config-mri.yaml").read_text())
    spec = validate(config)["datasets"]["oasis_synthetic"]
    assert spec["preprocess"]["registration_epi"] == schema_defaults("registration_epi")
    assert spec["preprocess"]["registration"]["iterations"] == 100 and spec["preprocess"]["registration"]["bins"] == 32
    assert spec["falff"] == {**schema_defaults("falff"), "dummy_volumes": 4}
    assert spec["discover"] == schema_defaults("discover")
    # what the rules pass to the commands builds the same settings as the section itself
    assert MriSettings.from_config(spec["preprocess"]) == MriSettings.from_config(
        yaml.safe_load((ROOT / ".test" / "config-mri.yaml").read_text())["datasets"]["oasis_synthetic"]["preprocess"])

    config = yaml.safe_load((ROOT / ".test" / "config-mri.yaml").read_text())
    config["datasets"]["oasis_synthetic"]["preprocess"] = {"regstration": {}}
    with pytest.raises(ConfigError, match=r"^datasets\.oasis_synthetic\.preprocess: .*'regstration' was unexpected.*"
                                          r"allowed keys: backend, brain_mask, grid, header, min_coverage, motion_correction, qc, "
                                          r"registration, registration_epi, store_dtype$"):
        validate(config)
    config["datasets"]["oasis_synthetic"]["preprocess"] = {"grid": {"size": 0}}
    with pytest.raises(ConfigError, match=r"datasets\.oasis_synthetic\.preprocess\.grid\.size: 0 is less than"):
        validate(config)
    config["datasets"]["oasis_synthetic"]["preprocess"] = {"registration": {"shrink_factors": [4, 2]}}
    with pytest.raises(ConfigError, match=r"datasets\.oasis_synthetic\.preprocess: .*same length"):
        validate(config)
    del config["datasets"]["oasis_synthetic"]["preprocess"]
    config["datasets"]["oasis_synthetic"]["discover"] = {"pairing": "each"}
    with pytest.raises(ConfigError, match=r"datasets\.oasis_synthetic\.discover\.pairing: 'each' is not allowed"):
        validate(config)


def test_missing_sources_settings_are_checked():
    """train.incomplete_samples is one of use|drop (default use); a synthetic_mri dataset's missing
    may name only its sources, and says which key is wrong."""
    base = {"methods": ["S"], "datasets": {"km": {"kind": "synthetic_mri", "sources": ["T1w", "T2w"]}}}
    config = validate(yaml.safe_load(yaml.safe_dump(base)))
    assert config["train"]["incomplete_samples"] == "use" and "missing" not in config["train"] and config["datasets"]["km"]["missing"] == {}
    with pytest.raises(ConfigError, match="incomplete_samples"):
        validate({**yaml.safe_load(yaml.safe_dump(base)), "train": {"incomplete_samples": "impute"}})
    with pytest.raises(ConfigError, match="missing"):  # the old name is an unknown key now
        validate({**yaml.safe_load(yaml.safe_dump(base)), "train": {"missing": "use"}})
    bad = yaml.safe_load(yaml.safe_dump(base))
    bad["datasets"]["km"]["missing"] = {"fALFF": 0.5}
    with pytest.raises(ConfigError, match=r"datasets.km.missing names \['fALFF'\]"):
        validate(bad)

"""The config schema is the one home of the bids_mri sections' defaults (preprocess, falff,
discover): the settings dataclasses carry none, take every value from the schema, and
``mmssl.config.validate`` vets a whole config in one call."""

from __future__ import annotations

import ast
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
    from mmssl.train.settings import TrainSettings

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
    from mmssl.train.settings import TrainSettings

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


# --- no config default in code ---------------------------------------------------------
PACKAGE = ROOT / "workflow" / "mmssl"

# (module, name): keyword / field defaults that look like a config key's (see
# code_defaults) but are not that key's default, each with why; and config values still
# defaulted in code, each named as such, to be moved into the schema (delete the entry
# then: a stale entry fails the test)
CODE_DEFAULTS_ALLOWED = {
    # not config values: same name (or the same value under a key's last word), another meaning
    ("train/loader.py", "extra"): "whether batches carry the store's extra arrays, not model.*.extra",
    ("evaluate/embed.py", "batch_size"): "embedding batch (inference memory), not train.batch_size",
    ("evaluate/embed.py", "device"): "embed's --device flag, not train.device",
    ("maps/pipeline.py", "device"): "maps' --device flag, not train.device",
    ("objectives/model_file.py", "device"): "where load_model puts the model (CPU for inspection)",
    ("evaluate/recovery.py", "seed"): "the recovery bootstrap's seed (--seed), not a config key",
    ("evaluate/recovery.py", "split"): "the split recovery scores, not similarity.split",
    ("preprocess/registration.py", "bins"): "NMI histogram of the QC metric, not the registration's Mattes bins",
    ("preprocess/registration.py", "order"): "an interpolation order, not falff.detrend_order",
    ("preprocess/spatial.py", "order"): "an interpolation order, not falff.detrend_order",
    ("data/synthetic.py", "pad"): "the synthetic skull's shell in voxels, not train.augment.pad",
    ("data/synthetic.py", "n_subjects"): "the synthetic BIDS generator (its command requires --n-subjects)",
    ("data/synthetic.py", "seed"): "the synthetic BIDS generator (its command requires --seed)",
    ("data/synthetic.py", "bad_inputs"): "the synthetic BIDS generator's --bad-inputs flag",
    ("data/synthetic.py", "dummy_volumes"): "the dummy scans the synthetic BOLD runs are written with",
    ("data/svhn.py", "dtype"): "the mnist_svhn store's dtype: no config key of that kind sets it (float32 only in tests)",
    ("objectives/cca.py", "r"): "cca_correlation, a per-batch diagnostic no config reaches (RunningCCA takes model.cca_r)",
}


def schema_key_defaults(node: Any, found: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    """Every property name at any depth of the config schema ``node`` -> the defaults the
    schema gives it (empty for a property without one)."""
    found = {} if found is None else found
    if isinstance(node, list):
        for value in node:
            schema_key_defaults(value, found)
    elif isinstance(node, dict):
        for key, sub in (node["properties"] if isinstance(node.get("properties"), dict) else {}).items():
            found.setdefault(key, []).extend([sub["default"]] if isinstance(sub, dict) and "default" in sub else [])
        for value in node.values():
            schema_key_defaults(value, found)
    return found


def literal_defaults(source: str) -> list[tuple[int, str, Any]]:
    """(line, name, value) of every literal default in ``source``: parameters of functions
    and lambdas, and annotated class fields (dataclasses, NamedTuples). None is left out: it
    says 'not given', and the caller that means a value passes it."""
    found = []

    def keep(name: str, node: ast.AST) -> None:
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError):
            return  # a computed default (schema_default(...), field(...)): not a literal
        if value is not None:
            found.append((node.lineno, name, value))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, value in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                keep(arg.arg, value)
            for arg, value in zip(args.kwonlyargs, args.kw_defaults):
                if value is not None:
                    keep(arg.arg, value)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.value:
                    keep(statement.target.id, statement.value)
    return found


def same_value(code: Any, schema: Any) -> bool:
    """A code default equals a schema default (tuples as YAML lists)."""
    return code == schema or isinstance(code, tuple) and list(code) == schema


def code_defaults(modules: dict[str, str], keys: dict[str, list[Any]]) -> list[tuple[str, int, str, Any]]:
    """(module, line, name, value) of the literal defaults in ``modules`` (relative path ->
    source) that look like a config key's: named like a key (any value), or named like a
    key's last word(s) with that key's schema default as value (``keep=0.99`` beside
    ``svcca_keep: 0.99``)."""
    def config_like(name: str, value: Any) -> bool:
        return name in keys or any(key.endswith(f"_{name}") and any(same_value(value, d) for d in defaults)
                                   for key, defaults in keys.items())

    return [(module, line, name, value) for module, source in sorted(modules.items())
            for line, name, value in literal_defaults(source) if config_like(name, value)]


def test_no_config_key_has_a_default_in_code():
    """The schema is the only home of a config default: a keyword default or class field
    that looks like a config key's (``t2_gain=0.6``, or ``keep=0.99`` beside
    ``similarity.svcca_keep``) is a second home that can drift from it, unless allowed above."""
    keys = schema_key_defaults(load_schema())
    modules = {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}
    found = code_defaults(modules, keys)
    offences = [f"{module}:{line}: {name}={value!r}" for module, line, name, value in found
                if (module, name) not in CODE_DEFAULTS_ALLOWED]
    assert offences == [], "config defaults belong in workflow/schemas/config.schema.yaml"
    stale = sorted(set(CODE_DEFAULTS_ALLOWED) - {(module, name) for module, _, name, _ in found})
    assert stale == [], "allowed code defaults that no longer exist: remove them from CODE_DEFAULTS_ALLOWED"


def test_the_code_default_scan_finds_planted_defaults():
    """The scan above can fail: it sees keyword, positional, lambda and field defaults named
    like a schema key, and a key's last word with that key's default; it leaves None,
    computed defaults, other names and other values alone."""
    source = '''
def f(x, keep=0.99, *, t2_gain=0.6, other=1, missing=None, tolerance=0.5):
    return lambda seed=3: seed

@dataclass
class S:
    epochs: int = 50
    lr: float = schema_default("train", "lr")
    sources: tuple = ("T1w", "fALFF")
'''
    keys = {"svcca_keep": [0.99], "t2_gain": [0.6], "missing": [{}], "seed": [0], "epochs": [50], "lr": [4e-4],
            "sources": [["T1w", "fALFF"]], "tr_tolerance": [0.01]}
    found = [(name, value) for _, _, name, value in code_defaults({"planted.py": source}, keys)]
    assert sorted(found) == [("epochs", 50), ("keep", 0.99), ("seed", 3), ("sources", ("T1w", "fALFF")),
                             ("t2_gain", 0.6)]
    schema = schema_key_defaults(load_schema())
    assert schema["svcca_keep"] == [0.99] and {"t2_gain", "missing", "epochs", "sources"} <= set(schema)

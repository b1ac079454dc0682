# Helpers shared by all rules: config validation, paths, per-dataset settings.
import json
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# the package lives beside the rules; importing it from here needs no install step
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
import mmssl.config as mcfg  # noqa: E402

try:
    # mmssl's own pass first: its message names the key and lists what is allowed
    mcfg.validate(config)
    mcfg.check_mri_sections(config)
except mcfg.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}")
validate(config, schema="../schemas/config.schema.yaml")  # also fills defaults


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    method="[A-Za-z][A-Za-z0-9-]*",
    fold="[0-9]+",


RESULTS = config["results"]

def _python():
    """The interpreter rules run: the conda env's `python` with --software-deployment-method
    conda, else the one running Snakemake (so a venv works without being activated)."""
    try:
        from snakemake.settings.types import DeploymentMethod

        if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
            return "python"
    except (ImportError, AttributeError):
        pass
    return shlex.quote(sys.executable)


# every rule runs the CLI of the package that sits beside this file
MMSSL = f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'workflow'))}${{PYTHONPATH:+:$PYTHONPATH}} {_python()} -m mmssl"


def res(dataset, *parts):
    """results/{dataset}/<parts>"""
    return str(Path(RESULTS, dataset, *parts))


def dataset_spec(dataset):
    if dataset not in config["datasets"]:
        raise WorkflowError(f"unknown dataset {dataset!r}; configured datasets: {', '.join(config['datasets'])}")
    return config["datasets"][dataset]


def section_json(dataset, section):
    """The dataset's merged settings of one config section, as a JSON argument."""
    try:
        return json.dumps(mcfg.dataset_section(config, dataset, section), sort_keys=True)
    except mcfg.ConfigError as err:
        raise WorkflowError(str(err))


def methods_of(dataset):
    try:
        return mcfg.dataset_methods(config, dataset)
    except mcfg.ConfigError as err:
        raise WorkflowError(str(err))


def folds_of(dataset):
    try:
        return mcfg.dataset_folds(config, dataset)
    except mcfg.ConfigError as err:
        raise WorkflowError(str(err))


def check_run(wildcards):
    """Fail at DAG time, with a clear message, for a method or fold that is not valid."""
    spec = dataset_spec(wildcards.dataset)
    try:
        from mmssl.objectives import check_method_name

        check_method_name(wildcards.method)
    except ValueError as err:
        raise WorkflowError(str(err))
    n = spec["splits"]["n_folds"]
    if int(wildcards.fold) >= n:
        raise WorkflowError(f"fold {wildcards.fold} out of range: dataset {wildcards.dataset} has splits.n_folds = {n} (folds 0..{n - 1})")


def store_of(wildcards):
    """The packed store a (dataset, fold) trains on: one per dataset, or one per fold for
    brain MRI, whose histogram standardisation is fitted on each fold's training subjects."""
    if dataset_spec(wildcards.dataset)["kind"] == "bids_mri":
        return res(wildcards.dataset, "preproc", f"fold{wildcards.fold}", "store")
    return res(wildcards.dataset, "store")


def split_source(wildcards):
    """What the splits are cut from: the store, or the preprocessed pairs (brain MRI)."""
    if dataset_spec(wildcards.dataset)["kind"] == "bids_mri":
        return {"subjects": res(wildcards.dataset, "preproc", "pairs.tsv")}
    return {"store": res(wildcards.dataset, "store")}


def split_of(wildcards):
    return res(wildcards.dataset, "splits", f"fold{wildcards.fold}.tsv")


def run_inputs(wildcards):
    check_run(wildcards)
    return {"store": store_of(wildcards), "split": split_of(wildcards)}


def probe_settings_json(dataset):
    """The probe section for this dataset's task: its own sub-section plus `classes`."""
    probe = json.loads(section_json(dataset, "probe"))
    classes = probe["classes"]
    if classes is None and probe_task(dataset) == "binary":
        classes = dataset_spec(dataset)["classes"][:2]  # paper: HC vs AD
    return json.dumps({**probe[probe_task(dataset)], "classes": classes}, sort_keys=True)


def probe_task(dataset):
    return "binary" if dataset_spec(dataset)["kind"] == "bids_mri" else "multiclass"


def runs(dataset):
    return [(m, k) for m in methods_of(dataset) for k in folds_of(dataset)]


def report_inputs(wildcards):
    ds = wildcards.dataset
    files = []
    for m, k in runs(ds):
        files += [res(ds, "probe", m, f"fold{k}.tsv"), res(ds, "similarity", m, f"fold{k}.tsv")]
    return files


def all_reports():
    out = []
    for ds, spec in config["datasets"].items():
        out += [res(ds, name) for name in ("summary.tsv", "table.md", "figure.png")]
        if spec["kind"] == "bids_mri":
            out += [res(ds, "qc", "qc.tsv"), res(ds, "excluded.tsv")]
    return out

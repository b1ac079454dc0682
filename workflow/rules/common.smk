# Helpers shared by all rules: config validation, paths, per-dataset settings.
import functools
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

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


# Every rule's shell line starts with `mmssl <command>`: a shell function, defined once
# here, that runs the CLI of the package beside this file with the interpreter above (so
# neither an activated venv nor an installed package is needed, and the rule shows its
# command). Snakemake formats the prefix once, hence the doubled braces.
_MMSSL_FUNCTION = (
    f"mmssl() {{ PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'workflow'))}"
    f"${{PYTHONPATH:+:$PYTHONPATH}} {_python()} -m mmssl \"$@\"; }}; "
)
_ESCAPED = _MMSSL_FUNCTION.replace("{", "{{").replace("}", "}}")
shell.prefix(f"set -euo pipefail; {_ESCAPED}")


def res(dataset, *parts):
    """results/{dataset}/<parts>"""
    return str(Path(RESULTS, dataset, *parts))


def dataset_spec(dataset):
    if dataset not in config["datasets"]:
        raise WorkflowError(f"unknown dataset {dataset!r}; configured datasets: {', '.join(config['datasets'])}")
    return config["datasets"][dataset]


@functools.cache
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


# ---- data (data.smk) ----
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def mnist_idx_inputs(folder):
    """The four IDX files in ``folder``: unzipped ones placed by hand are used as they
    are, otherwise the .gz names (which the download rule can make)."""
    return [str(Path(folder, f)) if Path(folder, f).exists() else str(Path(folder, f"{f}.gz")) for f in MNIST_FILES]


# the config keys that name a raw-data folder, by kind; a download error quotes them
FOLDER_KEYS = {"two_view_mnist": ("path",), "mnist_svhn": ("mnist_path", "svhn_path")}


def config_keys_for(folder):
    """Every datasets.<name>.<key> whose folder is ``folder``, comma-joined ("" when none:
    the download error then names no key rather than a placeholder)."""
    keys = [f"datasets.{name}.{key}" for name, spec in config["datasets"].items()
            for key in FOLDER_KEYS.get(spec["kind"], ()) if spec.get(key) and Path(spec[key]) == Path(folder)]
    return ",".join(keys)


def prepare_inputs(wildcards):
    spec = dataset_spec(wildcards.dataset)
    if spec["kind"] == "two_view_mnist" and spec["source"] == "idx":
        return mnist_idx_inputs(spec["path"])
    if spec["kind"] == "mnist_svhn":
        return mnist_idx_inputs(spec["mnist_path"]) + [str(Path(spec["svhn_path"], f)) for f in SVHN_FILES]
    return []


def prepare_command(wildcards, output):
    spec = dataset_spec(wildcards.dataset)
    if spec["kind"] == "two_view_mnist":
        return (f"prepare-two-view --source {spec['source']} --path {shlex.quote(spec['path'])} "
                f"--seed {spec['view_seed']} --out {shlex.quote(output[0])}")
    if spec["kind"] == "mnist_svhn":
        settings = json.dumps({"per_mnist": spec["per_mnist"], "seed": spec["pair_seed"], "limit": spec["limit"]})
        return (f"prepare-mnist-svhn --mnist-dir {shlex.quote(spec['mnist_path'])} --svhn-dir "
                f"{shlex.quote(spec['svhn_path'])} --settings-json {shlex.quote(settings)} --out {shlex.quote(output[0])}")
    raise WorkflowError(f"dataset {wildcards.dataset}: kind {spec['kind']!r} has no 'prepare' step")


# ---- brain MRI (preprocess.smk) ----
def mri_spec(dataset):
    spec = dataset_spec(dataset)
    if spec["kind"] != "bids_mri":
        raise WorkflowError(f"dataset {dataset} is of kind {spec['kind']!r}, not bids_mri")
    return spec


def bids_dir_of(dataset):
    spec = mri_spec(dataset)
    if spec.get("synthetic") is not None:
        return res(dataset, "synthetic_bids")
    if not spec.get("bids_dir"):
        raise WorkflowError(f"datasets.{dataset}.bids_dir: required for a real BIDS dataset (or set synthetic)")
    if not Path(spec["bids_dir"]).is_dir():
        raise WorkflowError(f"datasets.{dataset}.bids_dir: {spec['bids_dir']} is not a folder (expected a BIDS "
                            "tree of sub-*/ses-*/{anat,func}); fix the path in your config file")
    return spec["bids_dir"]


def clinical_of(dataset):
    spec = mri_spec(dataset)
    if spec.get("clinical_csv"):
        if not Path(spec["clinical_csv"]).is_file():
            raise WorkflowError(f"datasets.{dataset}.clinical_csv: {spec['clinical_csv']} is not a file (expected the "
                                "OASIS-3 clinical CSV, e.g. OASIS3_UDSb4_cdr.csv); fix the path in your config file")
        return spec["clinical_csv"]
    if spec.get("synthetic") is not None:
        return str(Path(bids_dir_of(dataset), "phenotype", "OASIS3_UDSb4_cdr.csv"))
    raise WorkflowError(f"datasets.{dataset}.clinical_csv: required for a real BIDS dataset")


def preprocess_env(wildcards):
    """The conda env of the rules that can call FSL: envs/fsl.yaml (FSL from FSL's conda
    channel) when the dataset's preprocessing backend is fsl, else the usual one."""
    backend = mri_spec(wildcards.dataset).get("preprocess", {}).get("backend", "python")
    return "../../envs/fsl.yaml" if backend == "fsl" else "../../envs/mmssl.yaml"


def mri_settings_json(dataset):
    spec = mri_spec(dataset)
    return json.dumps({k: spec.get(k, {}) for k in ("preprocess", "falff")}, sort_keys=True)


def scan_table(dataset):
    """stem -> (path, sidecar) of every T1w and BOLD run in discovery's pairs (after the checkpoint)."""
    path = checkpoints.discover.get(dataset=dataset).output.pairs
    return _read_scan_table(path, os.stat(path).st_mtime_ns)


@functools.cache
def _read_scan_table(path, mtime_ns):
    """Read once per version of pairs.tsv (every scan job's params ask for it: re-reading it
    per job made an OASIS-3-sized dry run take 16 minutes); a rerun of discover changes
    the mtime, so the new table is read."""
    pairs = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    scans = {}
    for t1 in pairs["t1_path"].unique():
        scans[("anat", scan_stem(t1))] = (t1, "")
    for bold, sidecar in pairs[["bold_path", "bold_sidecar"]].drop_duplicates().itertuples(index=False):
        scans[("func", scan_stem(bold))] = (bold, sidecar)
    return scans


def scan_stem(path):
    from mmssl.preprocess.scan_commands import scan_stem as stem

    return stem(path)


def scan_of(wildcards, kind):
    try:
        return scan_table(wildcards.dataset)[(kind, wildcards.scan)]
    except KeyError:
        raise WorkflowError(f"{wildcards.scan}: not a {kind} scan of any pair in {res(wildcards.dataset, 'pairs.tsv')}")


def scan_statuses(wildcards):
    return [res(wildcards.dataset, "preproc", "status", kind, f"{stem}.tsv") for kind, stem in scan_table(wildcards.dataset)]

# Helpers shared by all rules: config validation, paths, per-dataset settings. The rule
# files hold rules only; every function a rule names is defined here.
import functools
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

# the package lives beside the rules; importing it from here needs no install step
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
import mmssl.config as mcfg  # noqa: E402
from mmssl.paths import BOLD, DATATYPE, SOURCES, STRUCTURAL, map_key, scan_derivatives, scan_prefix, sources_of  # noqa: E402

try:
    # the one validation, at load, before any rule: the schema (every section), its defaults
    # filled in, each dataset's merged sections, then the checks that need more than the
    # schema. One line naming the key and what is allowed, no traceback.
    mcfg.validate(config)
except mcfg.ConfigError as err:
    print(f"invalid configuration: {err}", file=sys.stderr)
    sys.exit(1)


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    method="[A-Za-z][A-Za-z0-9@-]*",
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
    """One config section of a dataset as a JSON argument: a global section (model, train,
    probe, similarity) merged with the dataset's overrides, or the dataset's own (splits,
    preprocess, falff, discover), defaults filled in by the schema."""
    try:
        if section in mcfg.SECTIONS:
            return json.dumps(mcfg.dataset_section(config, dataset, section), sort_keys=True)
    except mcfg.ConfigError as err:
        raise WorkflowError(str(err))
    # keys in the config's order: in discover.labels the first rule that matches wins
    return json.dumps(dataset_spec(dataset)[section])


def settings_of(section):
    """A params function: the dataset's ``section`` as JSON (see section_json)."""
    return lambda wildcards: section_json(wildcards.dataset, section)


def spec_value(key):
    """A params function: the dataset's config value ``key``."""
    return lambda wildcards: dataset_spec(wildcards.dataset)[key]


def datasets_of(*kinds):
    """A wildcard constraint matching the configured datasets of these kinds (and nothing
    when there are none): one rule per dataset kind where kinds need different commands."""
    names = [name for name, spec in config["datasets"].items() if spec["kind"] in kinds]
    return "|".join(names) if names else "(?!)"


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


def split_of(wildcards):
    return res(wildcards.dataset, "splits", f"fold{wildcards.fold}.tsv")


def run_inputs(wildcards):
    check_run(wildcards)
    return {"store": store_of(wildcards), "split": split_of(wildcards)}


def probe_task(wildcards):
    """binary (AD vs HC) for brain MRI, real or synthetic; multiclass (digits) otherwise."""
    return "binary" if dataset_spec(wildcards.dataset)["kind"] in ("bids_mri", "synthetic_mri") else "multiclass"


def probe_settings(wildcards):
    """The probe section for this dataset's task: its own sub-section plus `classes`."""
    probe = json.loads(section_json(wildcards.dataset, "probe"))
    task = probe_task(wildcards)
    classes = probe["classes"]
    if classes is None and task == "binary":
        classes = dataset_spec(wildcards.dataset)["classes"][:2]  # paper: HC vs AD
    return json.dumps({**probe[task], "classes": classes}, sort_keys=True)


def method_list(wildcards):
    return " ".join(methods_of(wildcards.dataset))


def one_per_subject_flag(wildcards):
    """Brain MRI has several pairs per subject; the evaluation takes one per subject."""
    return "--one-per-subject" if dataset_spec(wildcards.dataset)["kind"] == "bids_mri" else ""


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
        out += map_files(ds)
        if has_known_factors(ds):
            out.append(res(ds, "recovery.md"))
    return out


# ---- factor recovery (evaluate.smk): datasets whose generating factors are known ----
KNOWN_FACTOR_KINDS = ("synthetic_mri",)


def has_known_factors(dataset):
    """Whether the dataset's store index holds its generating factors (mmssl.data.known_mri)."""
    return dataset_spec(dataset)["kind"] in KNOWN_FACTOR_KINDS


def recovery_inputs(wildcards):
    """The latents the probe reads and the store whose index holds the factors."""
    if not has_known_factors(wildcards.dataset):
        raise WorkflowError(f"dataset {wildcards.dataset} is of kind {dataset_spec(wildcards.dataset)['kind']!r}: "
                            f"factor recovery needs known generating factors (kinds {list(KNOWN_FACTOR_KINDS)})")
    check_run(wildcards)
    return {"latents": res(wildcards.dataset, "latents", wildcards.method, f"fold{wildcards.fold}.npz"),
            "store": store_of(wildcards)}


def recovery_tables(wildcards):
    return [res(wildcards.dataset, "recovery", m, f"fold{k}.tsv") for m, k in runs(wildcards.dataset)]


# ---- brain maps (maps.smk) ----
MAP_KINDS = ("bids_mri", "synthetic_mri")


def map_files(dataset):
    """Every brain map of an MRI dataset whose maps.enabled is set (none otherwise): per run
    and source the attribution NIfTI, its sidecar and PNG; the link NIfTI and sidecar too
    for a method with a CL or CS part."""
    spec = dataset_spec(dataset)
    if spec["kind"] not in MAP_KINDS or not spec["maps"]["enabled"] or not mcfg.has_labels(spec):
        return []  # a map explains the probe's decision: an unlabelled dataset has none
    from mmssl.maps.links import has_links

    files = []
    for m, k in runs(dataset):
        for s in spec["sources"]:
            names = ["attribution_map.nii.gz", "attribution_map.json", "attribution_map.png"]
            if has_links(m) and len(spec["sources"]) > 1:
                names += ["links_map.nii.gz", "links_map.json"]
            files += [res(dataset, "maps", m, f"fold{k}", f"{s}_desc-{name}") for name in names]
    return files


def maps_inputs(wildcards):
    """The store, model and latents the maps of one (dataset, method, fold, source) come from."""
    check_run(wildcards)
    spec = dataset_spec(wildcards.dataset)
    if wildcards.source not in spec["sources"]:
        raise WorkflowError(f"source {wildcards.source} is not among datasets.{wildcards.dataset}.sources {spec['sources']}")
    ds, method, fold = wildcards.dataset, wildcards.method, f"fold{wildcards.fold}"
    return {"store": store_of(wildcards), "model": res(ds, "models", method, fold, "model.pt"),
            "latents": res(ds, "latents", method, f"{fold}.npz")}


def attribution_inputs(wildcards):
    """maps_inputs and the probe's table of the same latents: the attribution explains its decision."""
    return {**maps_inputs(wildcards), "probe": res(wildcards.dataset, "probe", wildcards.method, f"fold{wildcards.fold}.tsv")}


def links_inputs(wildcards):
    """maps_inputs, for a method with a CL or CS part (the others have no link maps)."""
    from mmssl.maps.links import has_links

    if not has_links(wildcards.method):
        raise WorkflowError(f"method {wildcards.method} has no CL or CS part, so no link maps (e.g. L-CL, CS-S have them)")
    return maps_inputs(wildcards)


def maps_grid(wildcards):
    """The MNI grid of the dataset's stored volumes, as JSON: bids_mri's preprocess.grid; for
    synthetic_mri 192 mm / size voxels, the field of view mmssl.data.known_mri generates on."""
    spec = dataset_spec(wildcards.dataset)
    grid = spec["preprocess"]["grid"] if spec["kind"] == "bids_mri" else {"size": spec["size"], "voxel_mm": 192.0 / spec["size"]}
    return json.dumps(grid, sort_keys=True)


def maps_classes(wildcards):
    """The decision's [negative, positive] classes: the binary probe's."""
    return " ".join(json.loads(probe_settings(wildcards))["classes"])


# ---- data (data.smk) ----
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def mnist_idx_inputs(folder):
    """The four IDX files in ``folder``: unzipped ones placed by hand are used as they
    are, otherwise the .gz names (which the download rule can make)."""
    return [str(Path(folder, f)) if Path(folder, f).exists() else str(Path(folder, f"{f}.gz")) for f in MNIST_FILES]


# the config keys that name a raw-data folder, by kind; a download error quotes them
FOLDER_KEYS = {"two_view_mnist": ("path",), "mnist_svhn": ("mnist_path", "svhn_path")}


def config_keys(wildcards):
    """Every datasets.<name>.<key> whose folder is the download's ``folder``, comma-joined
    ("" when none: the download error then names no key rather than a placeholder)."""
    folder = wildcards.folder
    keys = [f"datasets.{name}.{key}" for name, spec in config["datasets"].items()
            for key in FOLDER_KEYS.get(spec["kind"], ()) if spec.get(key) and Path(spec[key]) == Path(folder)]
    return ",".join(keys)


def two_view_inputs(wildcards):
    """The MNIST IDX files of a two-view dataset built from them (none for the embedded digits)."""
    spec = dataset_spec(wildcards.dataset)
    return mnist_idx_inputs(spec["path"]) if spec["source"] == "idx" else []


def mnist_svhn_inputs(wildcards):
    spec = dataset_spec(wildcards.dataset)
    return {"mnist": mnist_idx_inputs(spec["mnist_path"]), "svhn": [str(Path(spec["svhn_path"], f)) for f in SVHN_FILES]}


KNOWN_MRI_KEYS = ("n_subjects", "seed", "size", "atrophy", "falff_drop", "specific", "label_noise", "noise",
                  "sources", "t2_gain", "missing")


def known_mri_settings(wildcards):
    """The generative model's keys of a synthetic_mri dataset, as a JSON argument."""
    spec = dataset_spec(wildcards.dataset)
    return json.dumps({key: spec[key] for key in KNOWN_MRI_KEYS})


def mnist_svhn_settings(wildcards):
    spec = dataset_spec(wildcards.dataset)
    return json.dumps({"per_mnist": spec["per_mnist"], "seed": spec["pair_seed"], "limit": spec["limit"]})


# ---- brain MRI (preprocess.smk) ----
def mri_spec(dataset):
    spec = dataset_spec(dataset)
    if spec["kind"] != "bids_mri":
        raise WorkflowError(f"dataset {dataset} is of kind {spec['kind']!r}, not bids_mri")
    return spec


def synthetic_value(key):
    """A params function: a key of the dataset's ``synthetic`` section."""
    return lambda wildcards: mri_spec(wildcards.dataset)["synthetic"][key]


def bad_inputs_flag(wildcards):
    return "--bad-inputs" if mri_spec(wildcards.dataset)["synthetic"]["bad_inputs"] else ""


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


def discover_inputs(wildcards):
    """The BIDS folder and a real dataset's clinical CSV when it has one (the synthetic
    dataset's lies inside its folder, a directory output whose files Snakemake does not
    track one by one; participants.tsv lies inside the BIDS folder too)."""
    inputs = {"bids": bids_dir_of(wildcards.dataset)}
    clinical = clinical_csv(wildcards.dataset)
    if clinical and mri_spec(wildcards.dataset).get("synthetic") is None:
        inputs["clinical"] = clinical
    return inputs


def clinical_csv(dataset):
    """The clinical visit table: the configured CSV, the synthetic dataset's own, or None
    (labels from discover.participants: participants.tsv)."""
    spec = mri_spec(dataset)
    if spec.get("clinical_csv"):
        if not Path(spec["clinical_csv"]).is_file():
            raise WorkflowError(f"datasets.{dataset}.clinical_csv: {spec['clinical_csv']} is not a file (expected a "
                                "clinical visit table such as OASIS-3's OASIS3_UDSb4_cdr.csv); fix the path or leave "
                                "the key out to take labels from participants.tsv")
        return spec["clinical_csv"]
    if spec.get("synthetic") is not None:
        return str(Path(bids_dir_of(dataset), "phenotype", "OASIS3_UDSb4_cdr.csv"))
    return None


def clinical_flag(wildcards):
    clinical = clinical_csv(wildcards.dataset)
    return f"--clinical {shlex.quote(clinical)}" if clinical else ""


def mmssl_env(wildcards):
    """The rules' conda env: envs/mmssl.yaml (torch's CUDA build), or envs/mmssl-cpu.yaml
    with conda_torch: cpu (its CPU build, from PyTorch's CPU index)."""
    return "../../envs/mmssl-cpu.yaml" if config["conda_torch"] == "cpu" else "../../envs/mmssl.yaml"


def preprocess_env(wildcards):
    """The conda env of the rules that can call FSL: envs/fsl.yaml (FSL from FSL's conda
    channel; fsl-cpu.yaml with conda_torch: cpu) when the dataset's preprocessing backend is
    fsl, else the usual one."""
    if mri_spec(wildcards.dataset)["preprocess"]["backend"] != "fsl":
        return mmssl_env(wildcards)
    return "../../envs/fsl-cpu.yaml" if config["conda_torch"] == "cpu" else "../../envs/fsl.yaml"


def mri_sources(dataset):
    """The dataset's configured sources (config key ``sources``; the schema's default
    [T1w, fALFF]), in store order."""
    return list(mri_spec(dataset)["sources"])


def sources_flag(wildcards):
    """A params function: the dataset's sources, space-separated, for ``--sources``."""
    return " ".join(mri_sources(wildcards.dataset))


def mri_datasets(with_alff):
    """A wildcard constraint: the bids_mri datasets whose sources include ALFF (or do
    not): their BOLD jobs declare the ALFF maps too (preprocess_bold_alff) or not."""
    names = [name for name, spec in config["datasets"].items()
             if spec["kind"] == "bids_mri" and ("ALFF" in spec["sources"]) == with_alff]
    return "|".join(names) if names else "(?!)"


def other_structural():
    """A wildcard constraint: the structural suffixes other than T1w that some bids_mri
    dataset lists among its sources (preprocess_anat's ``{suffix}``)."""
    used = {s for spec in config["datasets"].values() if spec["kind"] == "bids_mri" for s in spec["sources"]}
    names = [s for s in STRUCTURAL if s != "T1w" and s in used]
    return "|".join(names) if names else "(?!)"


# the wildcards of one native scan's derivatives: sub-X[/ses-Y] and the scan's own entities
# (never a derivative's: space, res, desc, ... belong to the output name, not to the scan)
SCAN_WILDCARDS = {
    "folder": "sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?",
    "scan": "sub-[A-Za-z0-9]+(_(?!(space|res|desc|from|to|mode)-)[A-Za-z]+-[A-Za-z0-9]+)*",
}


def preproc_dir(wildcards):
    """results/{dataset}/preproc: the root of the derivatives' BIDS names (mmssl.paths)."""
    return res(wildcards.dataset, "preproc")


def scan_outputs(suffix, alff=False):
    """The output patterns of one scan's job: every derivative of mmssl.paths.derivative_specs
    (``suffix``: T1w, bold, or the wildcard "{suffix}"; the ALFF maps too with ``alff``),
    named by the same builder that collect uses to find them."""
    return scan_derivatives(res("{dataset}", "preproc"), suffix, prefix="{scan}", folder="{folder}", alff=alff)


def raw_scans(dataset):
    """(raw suffix, prefix) -> (raw path, sidecars, TR, TR's sidecar) of every scan in
    discovery's samples; read after the discover checkpoint has run."""
    return _read_raw_scans(*discovered_samples(dataset))


def discovered_samples(dataset):
    """(path, mtime in ns) of discovery's samples.tsv, once the discover checkpoint has run:
    the key of the caches below, so a new discovery is read anew."""
    path = checkpoints.discover.get(dataset=dataset).output.samples
    return path, os.stat(path).st_mtime_ns


@functools.cache
def _read_raw_scans(path, mtime_ns):
    """Read once per version of samples.tsv (every scan job asks for it: re-reading it per
    job made an OASIS-3-sized dry run take 16 minutes); a new discovery changes the mtime.
    Only a BOLD run's sidecars are inputs (its TR, merged by inheritance: ``;``-joined,
    root first); a structural sidecar is not read."""
    samples = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    scans = {}
    for modality in DATATYPE:
        if f"{modality}_path" not in samples.columns:
            continue
        if modality == BOLD:
            columns = [f"{modality}_{field}" for field in ("path", "sidecar", "RepetitionTime", "RepetitionTime_file")]
            rows = samples[columns].drop_duplicates().itertuples(index=False)
        else:
            rows = ((raw, "", "", "") for raw in samples[f"{modality}_path"].drop_duplicates())
        for raw, sidecars, tr, tr_file in rows:
            if raw:
                scans[scan_prefix(raw)] = (raw, [s for s in sidecars.split(";") if s], tr, tr_file)
    return scans


def raw_scan(wildcards, suffix):
    try:
        return raw_scans(wildcards.dataset)[(suffix, wildcards.scan)]
    except KeyError:
        raise WorkflowError(f"{wildcards.scan}: no {suffix} scan of that name in {res(wildcards.dataset, 'samples.tsv')}")


def raw_t1(wildcards):
    """The raw T1w of a preprocess_t1 job: an input, so a changed scan is preprocessed again."""
    return raw_scan(wildcards, "T1w")[0]


def raw_anat(wildcards):
    """The raw T2w or FLAIR (``{suffix}``) of a preprocess_anat job."""
    return raw_scan(wildcards, wildcards.suffix)[0]


def raw_bold(wildcards):
    """The raw BOLD run of a preprocess_bold job, and the JSON sidecars its metadata merges
    (so an edited top-level sidecar reruns the job)."""
    bold, sidecars, _, _ = raw_scan(wildcards, BOLD)
    return {"bold": bold, "sidecars": sidecars}


def tr_flags(wildcards):
    """``--tr`` and ``--tr-source``: the run's RepetitionTime as discovery resolved it (none:
    the header's)."""
    _, _, tr, tr_file = raw_scan(wildcards, BOLD)
    return f"--tr {tr} --tr-source {shlex.quote(tr_file)}" if tr else ""


def alff_flags(wildcards, output):
    """The ALFF outputs' flags, for the BOLD jobs that declare them (preprocess_bold_alff)."""
    if "ALFF" not in output.keys():
        return ""
    return f"--out-alff {shlex.quote(output.ALFF)} --out-alff-native {shlex.quote(output.alff_native)}"


def scan_files(*keys):
    """An input function: the derivatives ``keys`` of every scan in discovery's samples,
    where "map" stands for each of the dataset's sources that scan gives (a structural
    image's volume; a BOLD run's fALFF and/or ALFF map) and the other keys (mask, qc,
    status) are those of mmssl.paths.derivative_specs."""

    def files(wildcards):
        sources = tuple(mri_sources(wildcards.dataset))
        return _scan_files(res(wildcards.dataset, "preproc"), *discovered_samples(wildcards.dataset), tuple(keys), sources, None)

    return files


def source_files(*keys):
    """An input function like :func:`scan_files`, for the scans of one source only
    (``{modality}``, e.g. landmarks_T2w: every T2w), "map" being that source's volume."""

    def files(wildcards):
        sources = mri_sources(wildcards.dataset)
        if wildcards.modality not in sources:
            raise WorkflowError(f"source {wildcards.modality} is not among datasets.{wildcards.dataset}.sources {sources}")
        return _scan_files(res(wildcards.dataset, "preproc"), *discovered_samples(wildcards.dataset), tuple(keys),
                           tuple(sources), wildcards.modality)

    return files


@functools.cache
def _scan_files(root, samples_path, mtime_ns, keys, sources, only):
    """Built once per version of samples.tsv and key set (landmarks and pack ask for the same
    list for every fold, ~6,000 scans x 4 files on OASIS-3)."""
    alff = "ALFF" in sources
    wanted = [only] if only else list(sources)
    files = []
    for suffix, prefix in _read_raw_scans(samples_path, mtime_ns):
        maps = [map_key(s) for s in sources_of(suffix, wanted)]
        if not maps:
            continue
        derivatives = scan_derivatives(root, suffix, prefix, alff=alff)
        files += [derivatives[k] for key in keys for k in (maps if key == "map" else [key])]
    return files


def fold_landmarks(wildcards):
    """The landmarks of each of the dataset's sources for the fold, in source order."""
    return [res(wildcards.dataset, "preproc", f"fold{wildcards.fold}", f"landmarks_{s}.npy") for s in mri_sources(wildcards.dataset)]


def landmark_args(wildcards, input):
    """``SOURCE=PATH`` per source for ``mmssl pack --landmarks``."""
    return " ".join(f"{s}={shlex.quote(p)}" for s, p in zip(mri_sources(wildcards.dataset), input.landmarks))

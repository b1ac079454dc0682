"""The workflow's plan: which files each rule reads and writes and which flags it passes,
computed from the validated config. The package side of workflow/rules/common.smk, which
builds one :class:`Plan` and hands its methods to the rules as input and params functions
(a bound method taking ``wildcards`` is what Snakemake calls).

Everything that depends on a dataset's kind asks the registry (:mod:`mmssl.data.kinds`);
everything that depends on a modality or source asks :mod:`mmssl.paths`. The rule files
compare no kind name. Errors are raised as ``error`` (common.smk passes Snakemake's
WorkflowError), with a message naming the config key or target at fault.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

import mmssl.config as mcfg
from mmssl.data.kinds import KINDS, DatasetKind, kind_of, names_with
from mmssl.paths import BOLD, DATATYPE, alff_wanted, map_key, scan_derivatives, scan_prefix, sources_of, wildcard_structural

Wildcards = Any  # snakemake.io.Wildcards: attribute access to the rule's wildcards

# the files of the raw-data folders, by download (data.smk's download rules write them)
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# the wildcards of one native scan's derivatives: sub-X[/ses-Y] and the scan's own entities
# (never a derivative's: space, res, desc, ... belong to the output name, not to the scan)
SCAN_WILDCARDS = {
    "folder": "sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?",
    "scan": "sub-[A-Za-z0-9]+(_(?!(space|res|desc|from|to|mode)-)[A-Za-z]+-[A-Za-z0-9]+)*",
}
NOTHING = "(?!)"  # a wildcard constraint that matches no value (a rule with no dataset to serve)


def alternatives(names: list[str]) -> str:
    """A wildcard constraint matching exactly ``names`` (nothing when empty)."""
    return "|".join(names) if names else NOTHING


class Plan:
    """The rules' view of one validated config (``config``: the dict Snakemake loaded,
    defaults filled in by :func:`mmssl.config.validate`).

    ``samples_of(dataset)`` returns the path of the discover checkpoint's samples.tsv (it
    raises Snakemake's IncompleteCheckpointException until discovery has run)."""

    def __init__(self, config: dict[str, Any], samples_of: Callable[[str], str],
                 error: type[Exception] = ValueError) -> None:
        self.config = config
        self.results = config["results"]
        self.samples_of = samples_of
        self.error = error

    # ---- config ----
    def res(self, dataset: str, *parts: str) -> str:
        """results/{dataset}/<parts>"""
        return str(Path(self.results, dataset, *parts))

    def spec(self, dataset: str) -> dict[str, Any]:
        """The dataset's config section (``datasets.<dataset>``)."""
        if dataset not in self.config["datasets"]:
            raise self.error(f"unknown dataset {dataset!r}; configured datasets: {', '.join(self.config['datasets'])}")
        return self.config["datasets"][dataset]

    def kind(self, dataset: str) -> DatasetKind:
        return kind_of(self.spec(dataset))

    def datasets_with(self, **attributes: Any) -> str:
        """A wildcard constraint: the datasets whose kind has these attributes (mmssl.data.kinds)."""
        return alternatives(names_with(self.config["datasets"], **attributes))

    def mri_spec(self, dataset: str) -> dict[str, Any]:
        """The section of a dataset whose scans are preprocessed (discovery, QC)."""
        spec = self.spec(dataset)
        if not kind_of(spec).preprocessed:
            raise self.error(f"dataset {dataset} is of kind {spec['kind']!r}, whose data are not preprocessed scans")
        return spec

    @functools.cache
    def section_json(self, dataset: str, section: str) -> str:
        """One config section of a dataset as a JSON argument: a global section (model, train,
        probe, similarity) merged with the dataset's overrides, or the dataset's own (splits,
        preprocess, falff, discover, maps), defaults filled in by the schema."""
        try:
            if section in mcfg.SECTIONS:
                return json.dumps(mcfg.dataset_section(self.config, dataset, section), sort_keys=True)
        except mcfg.ConfigError as err:
            raise self.error(str(err)) from err
        # keys in the config's order: in discover.labels the first rule that matches wins
        return json.dumps(self.spec(dataset)[section])

    def settings(self, section: str) -> Callable[[Wildcards], str]:
        """A params function: the dataset's ``section`` as JSON (see section_json)."""
        return lambda wildcards: self.section_json(wildcards.dataset, section)

    def value(self, key: str) -> Callable[[Wildcards], Any]:
        """A params function: the dataset's config value ``key`` (a dotted key reads a
        nested section: ``synthetic.seed``)."""
        def get(wildcards: Wildcards) -> Any:
            value: Any = self.spec(wildcards.dataset)
            for part in key.split("."):
                value = value[part]
            return value
        return get

    def methods(self, dataset: str) -> list[str]:
        try:
            return mcfg.dataset_methods(self.config, dataset)
        except mcfg.ConfigError as err:
            raise self.error(str(err)) from err

    def folds(self, dataset: str) -> list[int]:
        try:
            return mcfg.dataset_folds(self.config, dataset)
        except mcfg.ConfigError as err:
            raise self.error(str(err)) from err

    def runs(self, dataset: str) -> list[tuple[str, int]]:
        return [(m, k) for m in self.methods(dataset) for k in self.folds(dataset)]

    def method_list(self, wildcards: Wildcards) -> str:
        return " ".join(self.methods(wildcards.dataset))

    def n_folds(self, wildcards: Wildcards) -> int:
        return self.spec(wildcards.dataset)["splits"]["n_folds"]

    def conda_env(self, wildcards: Wildcards) -> str:
        """The rules' conda env: envs/mmssl.yaml (torch's CUDA build), or envs/mmssl-cpu.yaml
        with conda_torch: cpu (its CPU build, from PyTorch's CPU index)."""
        return "../../envs/mmssl-cpu.yaml" if self.config["conda_torch"] == "cpu" else "../../envs/mmssl.yaml"

    def preprocess_env(self, wildcards: Wildcards) -> str:
        """The conda env of the rules that can call FSL: envs/fsl.yaml (FSL from FSL's conda
        channel; fsl-cpu.yaml with conda_torch: cpu) when the dataset's preprocessing backend
        is fsl, else the usual one."""
        if self.mri_spec(wildcards.dataset)["preprocess"]["backend"] != "fsl":
            return self.conda_env(wildcards)
        return "../../envs/fsl-cpu.yaml" if self.config["conda_torch"] == "cpu" else "../../envs/fsl.yaml"

    # ---- one (dataset, method, fold) ----
    def check_run(self, wildcards: Wildcards) -> None:
        """Fail at DAG time, with a clear message, for a dataset, method or fold that is not valid."""
        self.spec(wildcards.dataset)
        try:
            mcfg.check_fold(self.config, wildcards.dataset, int(wildcards.fold))
            from mmssl.objectives import check_method_name

            check_method_name(wildcards.method)
        except (ValueError, mcfg.ConfigError) as err:
            raise self.error(str(err)) from err

    def store(self, wildcards: Wildcards) -> str:
        """The packed store a (dataset, fold) trains on: one per dataset, or one per fold for
        a kind whose histogram standardisation is fitted on each fold's training subjects."""
        if self.kind(wildcards.dataset).store_per_fold():
            return self.res(wildcards.dataset, "preproc", f"fold{wildcards.fold}", "store")
        return self.res(wildcards.dataset, "store")

    def run_inputs(self, wildcards: Wildcards) -> dict[str, str]:
        self.check_run(wildcards)
        return {"store": self.store(wildcards),
                "split": self.res(wildcards.dataset, "splits", f"fold{wildcards.fold}.tsv")}

    def probe_task(self, wildcards: Wildcards) -> str:
        """The kind's probe task: binary (AD vs HC) for brain MRI, multiclass (digits) otherwise."""
        return self.kind(wildcards.dataset).probe_task

    def probe_settings(self, wildcards: Wildcards) -> str:
        """The probe section for this dataset's task: its own sub-section plus ``classes``."""
        probe = json.loads(self.section_json(wildcards.dataset, "probe"))
        task = self.probe_task(wildcards)
        classes = probe["classes"]
        if classes is None and task == "binary":
            classes = self.spec(wildcards.dataset)["classes"][:2]  # paper: HC vs AD
        return json.dumps({**probe[task], "classes": classes}, sort_keys=True)

    def one_per_subject_flag(self, wildcards: Wildcards) -> str:
        """Several samples per subject (sessions): the evaluation takes one per subject."""
        return "--one-per-subject" if self.kind(wildcards.dataset).one_per_subject else ""

    def recovery_inputs(self, wildcards: Wildcards) -> dict[str, str]:
        """The latents the probe reads and the store whose index holds the factors."""
        if not self.kind(wildcards.dataset).known_factors:
            known = [name for name, kind in KINDS.items() if kind.known_factors]
            raise self.error(f"dataset {wildcards.dataset} is of kind {self.spec(wildcards.dataset)['kind']!r}: "
                             f"factor recovery needs known generating factors (kinds {known})")
        self.check_run(wildcards)
        return {"latents": self.res(wildcards.dataset, "latents", wildcards.method, f"fold{wildcards.fold}.npz"),
                "store": self.store(wildcards)}

    # ---- per dataset: the report and rule all ----
    def report_inputs(self, wildcards: Wildcards) -> list[str]:
        ds = wildcards.dataset
        return [self.res(ds, stage, m, f"fold{k}.tsv") for m, k in self.runs(ds) for stage in ("probe", "similarity")]

    def recovery_tables(self, wildcards: Wildcards) -> list[str]:
        return [self.res(wildcards.dataset, "recovery", m, f"fold{k}.tsv") for m, k in self.runs(wildcards.dataset)]

    def all_results(self) -> list[str]:
        """What rule all asks for: every dataset's report, its QC and exclusions (preprocessed
        kinds), maps (where enabled) and factor recovery (known factors)."""
        out = []
        for ds, spec in self.config["datasets"].items():
            kind = kind_of(spec)
            out += [self.res(ds, name) for name in ("summary.tsv", "table.md", "figure.png")]
            if kind.preprocessed:
                out += [self.res(ds, "qc", "qc.tsv"), self.res(ds, "excluded.tsv")]
            out += self.map_files(ds)
            if kind.known_factors:
                out.append(self.res(ds, "recovery.md"))
        return out

    # ---- brain maps (maps.smk) ----
    def map_files(self, dataset: str) -> list[str]:
        """Every brain map of a dataset whose maps.enabled is set (none otherwise): per run
        and source the attribution NIfTI, its sidecar and PNG; the link NIfTI and sidecar too
        for a method with a CL or CS part."""
        spec = self.spec(dataset)
        kind = kind_of(spec)
        if not kind.maps or not spec["maps"]["enabled"] or not kind.has_labels(spec):
            return []  # a map explains the probe's decision: an unlabelled dataset has none
        from mmssl.maps.links import has_links

        files = []
        for m, k in self.runs(dataset):
            for s in spec["sources"]:
                names = ["attribution_map.nii.gz", "attribution_map.json", "attribution_map.png"]
                if has_links(m) and len(spec["sources"]) > 1:
                    names += ["links_map.nii.gz", "links_map.json"]
                files += [self.res(dataset, "maps", m, f"fold{k}", f"{s}_desc-{name}") for name in names]
        return files

    def maps_inputs(self, wildcards: Wildcards) -> dict[str, str]:
        """The store, model and latents the maps of one (dataset, method, fold, source) come from."""
        self.check_run(wildcards)
        spec = self.spec(wildcards.dataset)
        if wildcards.source not in spec["sources"]:
            raise self.error(f"source {wildcards.source} is not among datasets.{wildcards.dataset}.sources {spec['sources']}")
        ds, method, fold = wildcards.dataset, wildcards.method, f"fold{wildcards.fold}"
        return {"store": self.store(wildcards), "model": self.res(ds, "models", method, fold, "model.pt"),
                "latents": self.res(ds, "latents", method, f"{fold}.npz")}

    def attribution_inputs(self, wildcards: Wildcards) -> dict[str, str]:
        """maps_inputs and the probe's table of the same latents: the attribution explains its decision."""
        return {**self.maps_inputs(wildcards),
                "probe": self.res(wildcards.dataset, "probe", wildcards.method, f"fold{wildcards.fold}.tsv")}

    def links_inputs(self, wildcards: Wildcards) -> dict[str, str]:
        """maps_inputs, for a method with a CL or CS part (the others have no link maps)."""
        from mmssl.maps.links import has_links

        if not has_links(wildcards.method):
            raise self.error(f"method {wildcards.method} has no CL or CS part, so no link maps (e.g. L-CL, CS-S have them)")
        return self.maps_inputs(wildcards)

    def maps_grid(self, wildcards: Wildcards) -> str:
        """The MNI grid of the dataset's stored volumes, as JSON (the kind's grid)."""
        spec = self.spec(wildcards.dataset)
        return json.dumps(kind_of(spec).grid(spec), sort_keys=True)

    def maps_classes(self, wildcards: Wildcards) -> str:
        """The decision's [negative, positive] classes: the binary probe's."""
        return " ".join(json.loads(self.probe_settings(wildcards))["classes"])

    # ---- data (data.smk) ----
    @staticmethod
    def mnist_idx_inputs(folder: str) -> list[str]:
        """The four IDX files in ``folder``: unzipped ones placed by hand are used as they
        are, otherwise the .gz names (which the download rule can make)."""
        return [str(Path(folder, f)) if Path(folder, f).exists() else str(Path(folder, f"{f}.gz")) for f in MNIST_FILES]

    def config_keys(self, wildcards: Wildcards) -> str:
        """Every datasets.<name>.<key> whose folder is the download's ``folder``, comma-joined
        ("" when none: the download error then names no key rather than a placeholder)."""
        folder = wildcards.folder
        keys = [f"datasets.{name}.{key}" for name, spec in self.config["datasets"].items()
                for key in kind_of(spec).folder_keys if spec.get(key) and Path(spec[key]) == Path(folder)]
        return ",".join(keys)

    def two_view_inputs(self, wildcards: Wildcards) -> list[str]:
        """The MNIST IDX files of a two-view dataset built from them (none for the embedded digits)."""
        spec = self.spec(wildcards.dataset)
        return self.mnist_idx_inputs(spec["path"]) if spec["source"] == "idx" else []

    def mnist_svhn_inputs(self, wildcards: Wildcards) -> dict[str, list[str]]:
        spec = self.spec(wildcards.dataset)
        return {"mnist": self.mnist_idx_inputs(spec["mnist_path"]),
                "svhn": [str(Path(spec["svhn_path"], f)) for f in SVHN_FILES]}

    def known_mri_settings(self, wildcards: Wildcards) -> str:
        """The generative model's keys of a synthetic_mri dataset (the keyword arguments of
        mmssl.data.known_mri.build_known_mri_store), as a JSON argument."""
        from mmssl.data.known_mri import generator_keys

        spec = self.spec(wildcards.dataset)
        return json.dumps({key: spec[key] for key in generator_keys()})

    def mnist_svhn_settings(self, wildcards: Wildcards) -> str:
        spec = self.spec(wildcards.dataset)
        return json.dumps({"per_mnist": spec["per_mnist"], "seed": spec["pair_seed"], "limit": spec["limit"]})

    # ---- brain MRI (preprocess.smk) ----
    def bad_inputs_flag(self, wildcards: Wildcards) -> str:
        return "--bad-inputs" if self.mri_spec(wildcards.dataset)["synthetic"]["bad_inputs"] else ""

    def bids_dir(self, dataset: str) -> str:
        spec = self.mri_spec(dataset)
        if spec.get("synthetic") is not None:
            return self.res(dataset, "synthetic_bids")
        if not spec.get("bids_dir"):
            raise self.error(f"datasets.{dataset}.bids_dir: required for a real BIDS dataset (or set synthetic)")
        if not Path(spec["bids_dir"]).is_dir():
            raise self.error(f"datasets.{dataset}.bids_dir: {spec['bids_dir']} is not a folder (expected a BIDS "
                             "tree of sub-*/ses-*/{anat,func}); fix the path in your config file")
        return spec["bids_dir"]

    def clinical_csv(self, dataset: str) -> str | None:
        """The clinical visit table: the configured CSV, the synthetic dataset's own, or None
        (labels from discover.participants: participants.tsv)."""
        spec = self.mri_spec(dataset)
        if spec.get("clinical_csv"):
            if not Path(spec["clinical_csv"]).is_file():
                raise self.error(f"datasets.{dataset}.clinical_csv: {spec['clinical_csv']} is not a file (expected a "
                                 "clinical visit table such as OASIS-3's OASIS3_UDSb4_cdr.csv); fix the path or leave "
                                 "the key out to take labels from participants.tsv")
            return spec["clinical_csv"]
        if spec.get("synthetic") is not None:
            return str(Path(self.bids_dir(dataset), "phenotype", "OASIS3_UDSb4_cdr.csv"))
        return None

    def discover_inputs(self, wildcards: Wildcards) -> dict[str, str]:
        """The BIDS folder and a real dataset's clinical CSV when it has one (the synthetic
        dataset's lies inside its folder, a directory output whose files Snakemake does not
        track one by one; participants.tsv lies inside the BIDS folder too)."""
        inputs = {"bids": self.bids_dir(wildcards.dataset)}
        clinical = self.clinical_csv(wildcards.dataset)
        if clinical and self.mri_spec(wildcards.dataset).get("synthetic") is None:
            inputs["clinical"] = clinical
        return inputs

    def clinical_flag(self, wildcards: Wildcards) -> str:
        clinical = self.clinical_csv(wildcards.dataset)
        return f"--clinical {shlex.quote(clinical)}" if clinical else ""

    def sources(self, dataset: str) -> list[str]:
        """The dataset's configured sources (config key ``sources``), in store order."""
        return list(self.spec(dataset)["sources"])

    def sources_flag(self, wildcards: Wildcards) -> str:
        """A params function: the dataset's sources, space-separated, for ``--sources``."""
        return " ".join(self.sources(wildcards.dataset))

    def mri_datasets(self, with_alff: bool) -> str:
        """A wildcard constraint: the preprocessed datasets whose sources include ALFF (or do
        not): their BOLD jobs declare the ALFF maps too (preprocess_bold_alff) or not."""
        return alternatives([name for name in names_with(self.config["datasets"], preprocessed=True)
                             if alff_wanted(self.config["datasets"][name]["sources"]) == with_alff])

    def structural_in_use(self) -> str:
        """A wildcard constraint: the structural suffixes some preprocessed dataset lists
        among its sources (preprocess_anat's ``{suffix}``)."""
        used = {s for name in names_with(self.config["datasets"], preprocessed=True)
                for s in self.config["datasets"][name]["sources"]}
        return alternatives(wildcard_structural(used))

    def preproc_dir(self, wildcards: Wildcards) -> str:
        """results/{dataset}/preproc: the root of the derivatives' BIDS names (mmssl.paths)."""
        return self.res(wildcards.dataset, "preproc")

    def scan_outputs(self, suffix: str, alff: bool = False) -> dict[str, str]:
        """The output patterns of one scan's job: every derivative of mmssl.paths.derivative_specs
        (``suffix``: bold, or the wildcard "{suffix}"; the ALFF maps too with ``alff``), named
        by the same builder that collect uses to find them."""
        return scan_derivatives(self.res("{dataset}", "preproc"), suffix, prefix="{scan}", folder="{folder}", alff=alff)

    def discovered_samples(self, dataset: str) -> tuple[str, int]:
        """(path, mtime in ns) of discovery's samples.tsv, once the discover checkpoint has run:
        the key of the caches below, so a new discovery is read anew."""
        path = self.samples_of(dataset)
        return path, os.stat(path).st_mtime_ns

    def raw_scan(self, wildcards: Wildcards, suffix: str) -> tuple[str, list[str], str, str]:
        """(raw path, sidecars, TR, TR's sidecar) of the scan ``{scan}`` of raw ``suffix``."""
        try:
            return read_raw_scans(*self.discovered_samples(wildcards.dataset))[(suffix, wildcards.scan)]
        except KeyError:
            raise self.error(f"{wildcards.scan}: no {suffix} scan of that name in "
                             f"{self.res(wildcards.dataset, 'samples.tsv')}") from None

    def raw_anat(self, wildcards: Wildcards) -> str:
        """The raw structural image (``{suffix}``) of a preprocess_anat job: an input, so a
        changed scan is preprocessed again."""
        return self.raw_scan(wildcards, wildcards.suffix)[0]

    def raw_bold(self, wildcards: Wildcards) -> dict[str, Any]:
        """The raw BOLD run of a preprocess_bold job, and the JSON sidecars its metadata merges
        (so an edited top-level sidecar reruns the job)."""
        bold, sidecars, _, _ = self.raw_scan(wildcards, BOLD)
        return {"bold": bold, "sidecars": sidecars}

    def tr_flags(self, wildcards: Wildcards) -> str:
        """``--tr`` and ``--tr-source``: the run's RepetitionTime as discovery resolved it
        (none: the header's)."""
        _, _, tr, tr_file = self.raw_scan(wildcards, BOLD)
        return f"--tr {tr} --tr-source {shlex.quote(tr_file)}" if tr else ""

    @staticmethod
    def alff_flags(wildcards: Wildcards, output: Any) -> str:
        """The ALFF outputs' flags, for the BOLD jobs that declare them (preprocess_bold_alff)."""
        if not alff_wanted(output.keys()):
            return ""
        return f"--out-alff {shlex.quote(output.ALFF)} --out-alff-native {shlex.quote(output.alff_native)}"

    def scan_files(self, *keys: str) -> Callable[[Wildcards], list[str]]:
        """An input function: the derivatives ``keys`` of every scan in discovery's samples,
        where "map" stands for each of the dataset's sources that scan gives (a structural
        image's volume; a BOLD run's fALFF and/or ALFF map) and the other keys (mask, qc,
        status) are those of mmssl.paths.derivative_specs."""
        def files(wildcards: Wildcards) -> list[str]:
            sources = tuple(self.sources(wildcards.dataset))
            return derivative_files(self.res(wildcards.dataset, "preproc"), *self.discovered_samples(wildcards.dataset),
                                    keys, sources, None)
        return files

    def source_files(self, *keys: str) -> Callable[[Wildcards], list[str]]:
        """An input function like :meth:`scan_files`, for the scans of one source only
        (``{source}``, e.g. landmarks of T2w: every T2w), "map" being that source's volume."""
        def files(wildcards: Wildcards) -> list[str]:
            sources = self.sources(wildcards.dataset)
            if wildcards.source not in sources:
                raise self.error(f"source {wildcards.source} is not among datasets.{wildcards.dataset}.sources {sources}")
            return derivative_files(self.res(wildcards.dataset, "preproc"), *self.discovered_samples(wildcards.dataset),
                                    keys, tuple(sources), wildcards.source)
        return files

    def fold_landmarks(self, wildcards: Wildcards) -> list[str]:
        """The landmarks of each of the dataset's sources for the fold, in source order."""
        return [self.res(wildcards.dataset, "preproc", f"fold{wildcards.fold}", f"landmarks_{s}.npy")
                for s in self.sources(wildcards.dataset)]

    def landmark_args(self, wildcards: Wildcards, input: Any) -> str:
        """``SOURCE=PATH`` per source for ``mmssl pack --landmarks``."""
        return " ".join(f"{s}={shlex.quote(p)}" for s, p in zip(self.sources(wildcards.dataset), input.landmarks))


@functools.cache
def read_raw_scans(path: str, mtime_ns: int) -> dict[tuple[str, str], tuple[str, list[str], str, str]]:
    """(raw suffix, prefix) -> (raw path, sidecars, TR, TR's sidecar) of every scan in
    discovery's samples. Read once per version of samples.tsv (every scan job asks for it:
    re-reading it per job made an OASIS-3-sized dry run take 16 minutes); a new discovery
    changes the mtime. Only a BOLD run's sidecars are inputs (its TR, merged by inheritance:
    ``;``-joined, root first); a structural sidecar is not read."""
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


@functools.cache
def derivative_files(root: str, samples_path: str, mtime_ns: int, keys: tuple[str, ...], sources: tuple[str, ...],
                     only: str | None) -> list[str]:
    """The derivatives ``keys`` of every scan (of source ``only``, or of all ``sources``).
    Built once per version of samples.tsv and key set (landmarks and pack ask for the same
    list for every fold, ~6,000 scans x 4 files on OASIS-3)."""
    alff = alff_wanted(sources)
    wanted = [only] if only else list(sources)
    files = []
    for suffix, prefix in read_raw_scans(samples_path, mtime_ns):
        maps = [map_key(s) for s in sources_of(suffix, wanted)]
        if not maps:
            continue
        derivatives = scan_derivatives(root, suffix, prefix, alff=alff)
        files += [derivatives[k] for key in keys for k in (maps if key == "map" else [key])]
    return files

# Data: raw files -> packed store -> subject-level splits.
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def mnist_idx_inputs(folder):
    """The four IDX files in ``folder``: unzipped ones placed by hand are used as they
    are, otherwise the .gz names (which the download rule can make)."""
    return [str(Path(folder, f)) if Path(folder, f).exists() else str(Path(folder, f + ".gz")) for f in MNIST_FILES]


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


rule prepare:
    """Raw data -> packed store (index.tsv, sources.json, one .npy per source)."""
    input:
        prepare_inputs,
    output:
        directory(res("{dataset}", "store")),
    log:
        res("{dataset}", "logs", "prepare.log"),
    benchmark:
        res("{dataset}", "benchmarks", "prepare.tsv")
    params:
        cmd=prepare_command,
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "{MMSSL} {params.cmd} 2> {log}"


rule splits:
    """Subject-level train/val/test(/holdout) table of one fold."""
    input:
        unpack(split_source),
    output:
        res("{dataset}", "splits", "fold{fold}.tsv"),
    log:
        res("{dataset}", "logs", "splits", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "splits", "fold{fold}.tsv")
    params:
        settings=lambda w: json.dumps(dataset_spec(w.dataset)["splits"]),
        source=lambda w, input: " ".join(f"--{k} {v}" for k, v in input.items()),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "{MMSSL} splits {params.source} --settings-json {params.settings:q} --fold {wildcards.fold} --out {output} 2> {log}"


rule download_mnist:
    """The four MNIST IDX files, checked against resources/downloads.tsv."""
    output:
        [f"{{folder}}/{f}.gz" for f in MNIST_FILES],
    log:
        "{folder}/download.log",
    benchmark:
        "{folder}/download.benchmark.tsv"
    wildcard_constraints:
        folder=".*mnist[^/]*",
    params:
        urls=workflow.source_path("../../resources/downloads.tsv"),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "{MMSSL} download --urls {params.urls} --dataset mnist --out-dir {wildcards.folder} 2> {log}"


rule download_svhn:
    """SVHN train_32x32.mat and test_32x32.mat, checked against resources/downloads.tsv."""
    output:
        "{folder}/train_32x32.mat",
        "{folder}/test_32x32.mat",
    log:
        "{folder}/download.log",
    benchmark:
        "{folder}/download.benchmark.tsv"
    wildcard_constraints:
        folder=".*svhn[^/]*",
    params:
        urls=workflow.source_path("../../resources/downloads.tsv"),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "{MMSSL} download --urls {params.urls} --dataset svhn --out-dir {wildcards.folder} 2> {log}"

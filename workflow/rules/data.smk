# Data: raw files -> packed store -> subject-level splits. Splits and downloads run on
# the submit host (cheap; compute nodes often have no internet).


localrules:
    splits,
    download_mnist,
    download_svhn,


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
        "mmssl {params.cmd} 2> {log}"


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
        "mmssl splits {params.source} --settings-json {params.settings:q} --fold {wildcards.fold} --out {output} 2> {log}"


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
        config_keys=lambda w: config_keys_for(w.folder),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl download --urls {params.urls} --dataset mnist --out-dir {wildcards.folder} --config-keys {params.config_keys:q} 2> {log}"


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
        config_keys=lambda w: config_keys_for(w.folder),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl download --urls {params.urls} --dataset svhn --out-dir {wildcards.folder} --config-keys {params.config_keys:q} 2> {log}"

# Data: raw files -> packed store -> subject-level splits. Splits and downloads run on
# the submit host (cheap; compute nodes often have no internet).


localrules:
    splits,
    splits_mri,
    download_mnist,
    download_svhn,


rule prepare_two_view:
    """MNIST digits -> two views (rotation, noise) in a packed store (index.tsv, sources.json, one .npy per view)."""
    input:
        PLAN.two_view_inputs,
    output:
        directory(res("{dataset}", "store")),
    log:
        res("{dataset}", "logs", "prepare.log"),
    benchmark:
        res("{dataset}", "benchmarks", "prepare.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(prepare_rule="prepare_two_view"),
    params:
        source=PLAN.value("source"),
        path=PLAN.value("path"),
        seed=PLAN.value("view_seed"),
        views=PLAN.value("views"),
    conda:
        PLAN.conda_env
    shell:
        "mmssl prepare-two-view --source {params.source} --path {params.path:q} --seed {params.seed} --views {params.views} "
        "--out {output} 2> {log}"


rule prepare_mnist_svhn:
    """MNIST and SVHN images of the same digit paired (Shi et al. 2019) in a packed store."""
    input:
        unpack(PLAN.mnist_svhn_inputs),
    output:
        directory(res("{dataset}", "store")),
    log:
        res("{dataset}", "logs", "prepare.log"),
    benchmark:
        res("{dataset}", "benchmarks", "prepare.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(prepare_rule="prepare_mnist_svhn"),
    params:
        mnist=PLAN.value("mnist_path"),
        svhn=PLAN.value("svhn_path"),
        settings=PLAN.mnist_svhn_settings,
    conda:
        PLAN.conda_env
    shell:
        "mmssl prepare-mnist-svhn --mnist-dir {params.mnist:q} --svhn-dir {params.svhn:q} "
        "--settings-json {params.settings:q} --out {output} 2> {log}"


rule prepare_known_mri:
    """The known-answer MRI benchmark: synthetic T1w and fALFF volumes on the MNI grid from a
    stated generative model (shared disease factor, modality-specific factors, nuisance)."""
    output:
        directory(res("{dataset}", "store")),
    log:
        res("{dataset}", "logs", "prepare.log"),
    benchmark:
        res("{dataset}", "benchmarks", "prepare.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(prepare_rule="prepare_known_mri"),
    params:
        settings=PLAN.known_mri_settings,
    conda:
        PLAN.conda_env
    shell:
        "mmssl prepare-known-mri --settings-json {params.settings:q} --out {output} 2> {log}"


rule splits:
    """Subject-level train/val/test(/holdout) table of one fold, from the store's subjects."""
    input:
        res("{dataset}", "store"),
    output:
        res("{dataset}", "splits", "fold{fold}.tsv"),
    log:
        res("{dataset}", "logs", "splits", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "splits", "fold{fold}.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(splits_from="store"),
    params:
        settings=PLAN.settings("splits"),
    conda:
        PLAN.conda_env
    shell:
        "mmssl splits --store {input} --settings-json {params.settings:q} --fold {wildcards.fold} --out {output} 2> {log}"


rule splits_mri:
    """Subject-level split table of one fold, from the subjects with a preprocessed sample."""
    input:
        res("{dataset}", "preproc", "samples.tsv"),
    output:
        res("{dataset}", "splits", "fold{fold}.tsv"),
    log:
        res("{dataset}", "logs", "splits", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "splits", "fold{fold}.tsv")
    wildcard_constraints:
        dataset=PLAN.datasets_with(splits_from="subjects"),
    params:
        settings=PLAN.settings("splits"),
    conda:
        PLAN.conda_env
    shell:
        "mmssl splits --subjects {input} --settings-json {params.settings:q} --fold {wildcards.fold} --out {output} 2> {log}"


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
        config_keys=PLAN.config_keys,
    conda:
        PLAN.conda_env
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
        config_keys=PLAN.config_keys,
    conda:
        PLAN.conda_env
    shell:
        "mmssl download --urls {params.urls} --dataset svhn --out-dir {wildcards.folder} --config-keys {params.config_keys:q} 2> {log}"

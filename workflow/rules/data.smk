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
        two_view_inputs,
    output:
        directory(res("{dataset}", "store")),
    log:
        res("{dataset}", "logs", "prepare.log"),
    benchmark:
        res("{dataset}", "benchmarks", "prepare.tsv")
    wildcard_constraints:
        dataset=datasets_of("two_view_mnist"),
    params:
        source=spec_value("source"),
        path=spec_value("path"),
        seed=spec_value("view_seed"),
        views=spec_value("views"),
    conda:
        mmssl_env
    shell:
        "mmssl prepare-two-view --source {params.source} --path {params.path:q} --seed {params.seed} --views {params.views} "
        "--out {output} 2> {log}"


rule prepare_mnist_svhn:
    """MNIST and SVHN images of the same digit paired (Shi et al. 2019) in a packed store."""
    input:
        unpack(mnist_svhn_inputs),
    output:
        directory(res("{dataset}", "store")),
    log:
        res("{dataset}", "logs", "prepare.log"),
    benchmark:
        res("{dataset}", "benchmarks", "prepare.tsv")
    wildcard_constraints:
        dataset=datasets_of("mnist_svhn"),
    params:
        mnist=spec_value("mnist_path"),
        svhn=spec_value("svhn_path"),
        settings=mnist_svhn_settings,
    conda:
        mmssl_env
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
        dataset=datasets_of("synthetic_mri"),
    params:
        settings=known_mri_settings,
    conda:
        mmssl_env
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
        dataset=datasets_of("two_view_mnist", "mnist_svhn", "synthetic_mri"),
    params:
        settings=settings_of("splits"),
    conda:
        mmssl_env
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
        dataset=datasets_of("bids_mri"),
    params:
        settings=settings_of("splits"),
    conda:
        mmssl_env
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
        config_keys=config_keys,
    conda:
        mmssl_env
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
        config_keys=config_keys,
    conda:
        mmssl_env
    shell:
        "mmssl download --urls {params.urls} --dataset svhn --out-dir {wildcards.folder} --config-keys {params.config_keys:q} 2> {log}"

# Brain MRI (kind: bids_mri): BIDS -> per-scan volumes of the dataset's sources (T1w, T2w,
# FLAIR, fALFF, ALFF; config key sources) on the 3 mm 64³ MNI grid -> per-fold histogram
# standardisation -> packed store. Every file is a declared input or output: raw scans are
# the scan jobs' inputs, and each derivative has its BIDS-derivatives name from mmssl.paths
# (results/{dataset}/preproc/sub-*/[ses-*/]{anat,func}/).
# On a cluster (profiles/slurm, which sets the groups): scans are preprocessed in batches
# (group "preprocess"), landmarks -> pack of one fold run as one job (group "store"); the
# cheap table steps run on the submit host.


localrules:
    synthetic_bids,
    discover,
    collect,


rule synthetic_bids:
    """The embedded default: a small synthetic OASIS-3-shaped BIDS dataset (see README)."""
    output:
        directory(res("{dataset}", "synthetic_bids")),
    log:
        res("{dataset}", "logs", "synthetic_bids.log"),
    benchmark:
        res("{dataset}", "benchmarks", "synthetic_bids.tsv")
    params:
        n=PLAN.value("synthetic.n_subjects"),
        seed=PLAN.value("synthetic.seed"),
        bad=PLAN.bad_inputs_flag,
    conda:
        PLAN.conda_env
    shell:
        "mmssl synthetic-bids --out {output} --n-subjects {params.n} --seed {params.seed} {params.bad} 2> {log}"


checkpoint discover:
    """The runs of the sources' modalities, clinical visits matched to sessions, subjects
    and samples (one scan per modality, empty where a subject has none)."""
    input:
        unpack(PLAN.discover_inputs),
    output:
        subjects=res("{dataset}", "subjects.tsv"),
        samples=res("{dataset}", "samples.tsv"),
        excluded=res("{dataset}", "preproc", "discovery_excluded.tsv"),
        description=res("{dataset}", "preproc", "dataset_description.json"),
    log:
        main=res("{dataset}", "logs", "discover.log"),
        excluded=res("{dataset}", "logs", "discover_excluded.tsv"),
    benchmark:
        res("{dataset}", "benchmarks", "discover.tsv")
    params:
        clinical=PLAN.clinical_flag,
        settings=PLAN.settings("discover"),
        sources=PLAN.sources_flag,
    conda:
        PLAN.conda_env
    shell:
        "mmssl discover --bids-dir {input.bids} {params.clinical} --settings-json {params.settings:q} "
        "--sources {params.sources} --dataset {wildcards.dataset} --out-subjects {output.subjects} "
        "--out-samples {output.samples} --out-excluded {output.excluded} --out-description {output.description} "
        "--log-excluded {log.excluded} 2> {log.main}"


# The scan jobs give ITK (SimpleITK's registration) the rule's threads: its multithreaded
# metric sums in a thread-dependent order, so with ITK's default (every core) two runs of one
# scan gave transforms differing in the 6th digit; with one thread (the profiles' setting) a
# rerun is bit-identical.
# One structural image (any structural modality among the dataset's sources: mmssl.paths):
# header check, brain mask, 12-dof affine to MNI152, 3 mm 64³ grid. Its derivatives name
# their suffix, so a T2w with the very entities of its session's T1w has names of its own.
rule preprocess_anat:
    """One structural image (T1w, T2w, FLAIR): header check, brain mask, 12-dof affine to
    MNI152, 3 mm 64³ grid."""
    input:
        image=PLAN.raw_anat,
    output:
        **PLAN.scan_outputs("{suffix}"),
    log:
        res("{dataset}", "logs", "preprocess", "{folder}", "{scan}_{suffix}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "preprocess", "{folder}", "{scan}_{suffix}.tsv")
    wildcard_constraints:
        **SCAN_WILDCARDS,
        suffix=PLAN.structural_in_use(),
    params:
        settings=PLAN.settings("preprocess"),
    conda:
        PLAN.preprocess_env
    shell:
        "OMP_NUM_THREADS={threads} ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} mmssl preprocess-anat --image {input.image:q} --suffix {wildcards.suffix} "
        "--settings-json {params.settings:q} --out-image {output.image} --out-mask {output.mask} --out-xfm {output.xfm} "
        "--out-qc {output.qc} --out-status {output.status} 2> {log}"


rule preprocess_bold:
    """One BOLD run: header check, fALFF (and ALFF: preprocess_bold_alff, for the datasets
    whose sources include it) and confounds in native space, mean EPI -> MNI152, the maps
    on the 3 mm 64³ grid."""
    input:
        unpack(PLAN.raw_bold),
    output:
        **PLAN.scan_outputs(BOLD),
    log:
        res("{dataset}", "logs", "preprocess", "{folder}", "{scan}_bold.log"),
    benchmark:
        res("{dataset}", "benchmarks", "preprocess", "{folder}", "{scan}_bold.tsv")
    wildcard_constraints:
        **SCAN_WILDCARDS,
        dataset=PLAN.mri_datasets(with_alff=False),
    params:
        tr=PLAN.tr_flags,
        settings=PLAN.settings("preprocess"),
        falff=PLAN.settings("falff"),
        alff=PLAN.alff_flags,
    conda:
        PLAN.preprocess_env
    shell:
        "OMP_NUM_THREADS={threads} ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} mmssl preprocess-bold --bold {input.bold:q} {params.tr} "
        "--settings-json {params.settings:q} --falff-json {params.falff:q} "
        "--out-falff {output.fALFF} --out-mask {output.mask} --out-xfm {output.xfm} --out-qc {output.qc} "
        "--out-status {output.status} --out-falff-native {output.falff_native} --out-mask-native {output.mask_native} "
        "--out-boldref {output.boldref} --out-confounds {output.confounds} {params.alff} 2> {log}"


use rule preprocess_bold as preprocess_bold_alff with:
    output:
        **PLAN.scan_outputs(BOLD, alff=True),
    wildcard_constraints:
        **SCAN_WILDCARDS,
        dataset=PLAN.mri_datasets(with_alff=True),


rule collect:
    """excluded.tsv (every excluded subject/scan/sample with its reason) and the usable samples."""
    input:
        statuses=PLAN.scan_files("status"),
        maps=PLAN.scan_files("map", "mask", "qc"),
        samples=res("{dataset}", "samples.tsv"),
        excluded=res("{dataset}", "preproc", "discovery_excluded.tsv"),
    output:
        excluded=report(res("{dataset}", "excluded.tsv"), caption="../report/excluded.rst", category="{dataset}",
                        subcategory="quality control"),
        samples=res("{dataset}", "preproc", "samples.tsv"),
    log:
        main=res("{dataset}", "logs", "collect.log"),
        excluded=res("{dataset}", "logs", "collect_excluded.tsv"),
    benchmark:
        res("{dataset}", "benchmarks", "collect.tsv")
    params:
        preproc=PLAN.preproc_dir,
        sources=PLAN.sources_flag,
    conda:
        PLAN.conda_env
    shell:
        "mmssl collect --discovery-excluded {input.excluded} --samples {input.samples} --statuses {input.statuses} "
        "--preproc-dir {params.preproc} --sources {params.sources} "
        "--out-excluded {output.excluded} --out-samples {output.samples} --log-excluded {log.excluded} 2> {log.main}"


rule landmarks:
    """Histogram-standardisation landmarks of one source from the fold's training subjects
    that have it."""
    input:
        samples=res("{dataset}", "preproc", "samples.tsv"),
        split=res("{dataset}", "splits", "fold{fold}.tsv"),
        maps=PLAN.source_files("map", "mask"),
    output:
        res("{dataset}", "preproc", "fold{fold}", "landmarks_{source}.npy"),
    log:
        res("{dataset}", "logs", "landmarks", "fold{fold}_{source}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "landmarks", "fold{fold}_{source}.tsv")
    wildcard_constraints:
        source="|".join(SOURCES),
    conda:
        PLAN.conda_env
    shell:
        "mmssl landmarks --samples {input.samples} --splits {input.split} --source {wildcards.source} --out {output} 2> {log}"


rule pack:
    """Standardised, z-normalised volumes of every sample in one float16 store for the fold
    (an array per source; zeros and has_<source> = 0 where a sample lacks it)."""
    input:
        samples=res("{dataset}", "preproc", "samples.tsv"),
        split=res("{dataset}", "splits", "fold{fold}.tsv"),
        landmarks=PLAN.fold_landmarks,
        maps=PLAN.scan_files("map", "mask"),
    output:
        directory(res("{dataset}", "preproc", "fold{fold}", "store")),
    log:
        res("{dataset}", "logs", "pack", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "pack", "fold{fold}.tsv")
    params:
        sources=PLAN.sources_flag,
        landmarks=PLAN.landmark_args,
        settings=PLAN.settings("preprocess"),
    conda:
        PLAN.conda_env
    shell:
        "mmssl pack --samples {input.samples} --splits {input.split} --sources {params.sources} "
        "--landmarks {params.landmarks} --out-dir {output} --settings-json {params.settings:q} 2> {log}"


rule qc:
    """qc.tsv (a row per sample, with flags), one montage per subject (a row per source), one HTML page (flagged first)."""
    input:
        samples=res("{dataset}", "preproc", "samples.tsv"),
        excluded=res("{dataset}", "excluded.tsv"),
        maps=PLAN.scan_files("map", "mask", "qc"),
    output:
        tsv=report(res("{dataset}", "qc", "qc.tsv"), caption="../report/qc.rst", category="{dataset}",
                   subcategory="quality control"),
        html=report(res("{dataset}", "qc", "index.html"), caption="../report/qc_html.rst", category="{dataset}",
                    subcategory="quality control"),
        montages=report(directory(res("{dataset}", "qc", "montages")), patterns=["sub-{subject}.png"],
                        caption="../report/montage.rst", category="{dataset}", subcategory="QC montages",
                        labels={"subject": "{subject}"}),
    log:
        res("{dataset}", "logs", "qc.log"),
    benchmark:
        res("{dataset}", "benchmarks", "qc.tsv")
    params:
        settings=PLAN.settings("preprocess"),
        sources=PLAN.sources_flag,
    conda:
        PLAN.conda_env
    shell:
        "mmssl qc --samples {input.samples} --excluded {input.excluded} --sources {params.sources} "
        "--out-tsv {output.tsv} --out-html {output.html} "
        "--montage-dir {output.montages} --settings-json {params.settings:q} 2> {log}"

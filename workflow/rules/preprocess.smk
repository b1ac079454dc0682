# Brain MRI (kind: bids_mri): BIDS -> per-scan T1w / fALFF on the 3 mm 64³ MNI grid ->
# per-fold histogram standardisation -> packed store. Every file is a declared input or
# output: raw scans are the scan jobs' inputs, and each derivative has its BIDS-derivatives
# name from mmssl.paths (results/{dataset}/preproc/sub-*/[ses-*/]{anat,func}/).
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
        n=synthetic_value("n_subjects"),
        seed=synthetic_value("seed"),
        bad=bad_inputs_flag,
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl synthetic-bids --out {output} --n-subjects {params.n} --seed {params.seed} {params.bad} 2> {log}"


checkpoint discover:
    """T1w/BOLD runs, clinical visits matched to sessions, subjects and (T1w, BOLD) pairs."""
    input:
        unpack(discover_inputs),
    output:
        subjects=res("{dataset}", "subjects.tsv"),
        pairs=res("{dataset}", "pairs.tsv"),
        excluded=res("{dataset}", "preproc", "discovery_excluded.tsv"),
    log:
        res("{dataset}", "logs", "discover.log"),
    benchmark:
        res("{dataset}", "benchmarks", "discover.tsv")
    params:
        clinical=clinical_csv,
        settings=settings_of("discover"),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl discover --bids-dir {input.bids} --clinical {params.clinical:q} --settings-json {params.settings:q} "
        "--dataset {wildcards.dataset} --out-subjects {output.subjects} --out-pairs {output.pairs} "
        "--out-excluded {output.excluded} 2> {log}"


rule preprocess_t1:
    """One T1w: header check, brain mask, 12-dof affine to MNI152, 3 mm 64³ grid."""
    input:
        t1=raw_t1,
    output:
        **scan_outputs("anat"),
    log:
        res("{dataset}", "logs", "preprocess", "{folder}", "{scan}_T1w.log"),
    benchmark:
        res("{dataset}", "benchmarks", "preprocess", "{folder}", "{scan}_T1w.tsv")
    wildcard_constraints:
        **SCAN_WILDCARDS,
    params:
        settings=settings_of("preprocess"),
    conda:
        preprocess_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl preprocess-t1 --t1 {input.t1:q} --settings-json {params.settings:q} "
        "--out-t1w {output.T1w} --out-mask {output.mask} --out-xfm {output.xfm} --out-qc {output.qc} "
        "--out-status {output.status} 2> {log}"


rule preprocess_bold:
    """One BOLD run: header check, fALFF and confounds in native space, mean EPI -> MNI152,
    fALFF map on the 3 mm 64³ grid."""
    input:
        unpack(raw_bold),
    output:
        **scan_outputs("func"),
    log:
        res("{dataset}", "logs", "preprocess", "{folder}", "{scan}_bold.log"),
    benchmark:
        res("{dataset}", "benchmarks", "preprocess", "{folder}", "{scan}_bold.tsv")
    wildcard_constraints:
        **SCAN_WILDCARDS,
    params:
        sidecar=sidecar_flag,
        settings=settings_of("preprocess"),
        falff=settings_of("falff"),
    conda:
        preprocess_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl preprocess-bold --bold {input.bold:q} {params.sidecar} "
        "--settings-json {params.settings:q} --falff-json {params.falff:q} "
        "--out-falff {output.fALFF} --out-mask {output.mask} --out-xfm {output.xfm} --out-qc {output.qc} "
        "--out-status {output.status} --out-falff-native {output.falff_native} --out-mask-native {output.mask_native} "
        "--out-boldref {output.boldref} --out-confounds {output.confounds} 2> {log}"


rule collect:
    """excluded.tsv (every excluded subject/scan/pair with its reason) and the usable pairs."""
    input:
        statuses=scan_files(anat=["status"], func=["status"]),
        maps=scan_files(anat=["T1w", "mask", "qc"], func=["fALFF", "mask", "qc"]),
        pairs=res("{dataset}", "pairs.tsv"),
        excluded=res("{dataset}", "preproc", "discovery_excluded.tsv"),
    output:
        excluded=res("{dataset}", "excluded.tsv"),
        pairs=res("{dataset}", "preproc", "pairs.tsv"),
    log:
        res("{dataset}", "logs", "collect.log"),
    benchmark:
        res("{dataset}", "benchmarks", "collect.tsv")
    params:
        preproc=preproc_dir,
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl collect --discovery-excluded {input.excluded} --pairs {input.pairs} --statuses {input.statuses} "
        "--preproc-dir {params.preproc} "
        "--out-excluded {output.excluded} --out-pairs {output.pairs} 2> {log}"


rule landmarks:
    """Histogram-standardisation landmarks of one modality from the fold's training subjects only."""
    input:
        pairs=res("{dataset}", "preproc", "pairs.tsv"),
        split=res("{dataset}", "splits", "fold{fold}.tsv"),
        maps=scan_files(anat=["T1w", "mask"], func=["fALFF", "mask"]),
    output:
        res("{dataset}", "preproc", "fold{fold}", "landmarks_{modality}.npy"),
    log:
        res("{dataset}", "logs", "landmarks", "fold{fold}_{modality}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "landmarks", "fold{fold}_{modality}.tsv")
    wildcard_constraints:
        modality="T1w|fALFF",
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl landmarks --pairs {input.pairs} --splits {input.split} --modality {wildcards.modality} --out {output} 2> {log}"


rule pack:
    """Standardised, z-normalised volumes of every pair in one float16 store for the fold."""
    input:
        pairs=res("{dataset}", "preproc", "pairs.tsv"),
        split=res("{dataset}", "splits", "fold{fold}.tsv"),
        t1=res("{dataset}", "preproc", "fold{fold}", "landmarks_T1w.npy"),
        falff=res("{dataset}", "preproc", "fold{fold}", "landmarks_fALFF.npy"),
        maps=scan_files(anat=["T1w", "mask"], func=["fALFF", "mask"]),
    output:
        directory(res("{dataset}", "preproc", "fold{fold}", "store")),
    log:
        res("{dataset}", "logs", "pack", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "pack", "fold{fold}.tsv")
    params:
        settings=settings_of("preprocess"),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl pack --pairs {input.pairs} --splits {input.split} --landmarks-t1 {input.t1} "
        "--landmarks-falff {input.falff} --out-dir {output} --settings-json {params.settings:q} 2> {log}"


rule qc:
    """qc.tsv (a row per pair, with flags), one montage per subject, one HTML page (flagged first)."""
    input:
        pairs=res("{dataset}", "preproc", "pairs.tsv"),
        maps=scan_files(anat=["T1w", "mask", "qc"], func=["fALFF", "qc"]),
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
        settings=settings_of("preprocess"),
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl qc --pairs {input.pairs} --out-tsv {output.tsv} --out-html {output.html} "
        "--montage-dir {output.montages} --settings-json {params.settings:q} 2> {log}"

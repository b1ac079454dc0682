# Evaluation on frozen encoders: latents once, then the linear probe and CKA/SVCCA.


rule embed:
    """Latent z of every source for the evaluation splits of one fold."""
    input:
        unpack(PLAN.run_inputs),
        model=res("{dataset}", "models", "{method}", "fold{fold}", "model.pt"),
    output:
        res("{dataset}", "latents", "{method}", "fold{fold}.npz"),
    log:
        res("{dataset}", "logs", "embed", "{method}", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "embed", "{method}", "fold{fold}.tsv")
    params:
        one=PLAN.one_per_subject_flag,
    conda:
        PLAN.conda_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl embed --store {input.store} --split {input.split} --model {input.model} "
        "--out {output} {params.one} 2> {log}"


rule probe:
    """Linear evaluation protocol: a linear classifier per source on frozen latents."""
    input:
        res("{dataset}", "latents", "{method}", "fold{fold}.npz"),
    output:
        res("{dataset}", "probe", "{method}", "fold{fold}.tsv"),
    log:
        res("{dataset}", "logs", "probe", "{method}", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "probe", "{method}", "fold{fold}.tsv")
    params:
        settings=PLAN.probe_settings,
        task=PLAN.probe_task,
    conda:
        PLAN.conda_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl probe --latents {input} --out {output} --task {params.task} "
        "--settings-json {params.settings:q} 2> {log}"


rule similarity:
    """Linear CKA and SVCCA between the sources' latents."""
    input:
        res("{dataset}", "latents", "{method}", "fold{fold}.npz"),
    output:
        res("{dataset}", "similarity", "{method}", "fold{fold}.tsv"),
    log:
        res("{dataset}", "logs", "similarity", "{method}", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "similarity", "{method}", "fold{fold}.tsv")
    params:
        settings=PLAN.settings("similarity"),
    conda:
        PLAN.conda_env
    shell:
        "mmssl similarity --latents {input} --out {output} --settings-json {params.settings:q} 2> {log}"


rule recovery:
    """Linear R² of each known generating factor from each source's frozen latents
    (datasets with known factors only: synthetic_mri)."""
    input:
        unpack(PLAN.recovery_inputs),
    output:
        res("{dataset}", "recovery", "{method}", "fold{fold}.tsv"),
    log:
        res("{dataset}", "logs", "recovery", "{method}", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "recovery", "{method}", "fold{fold}.tsv")
    conda:
        PLAN.conda_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl recovery --latents {input.latents} --store {input.store} --out {output} 2> {log}"


rule recovery_table:
    """Mean ± sd over folds of the factor recovery, per method × source × factor."""
    input:
        PLAN.recovery_tables,
    output:
        res("{dataset}", "recovery.md"),
    log:
        res("{dataset}", "logs", "recovery_table.log"),
    benchmark:
        res("{dataset}", "benchmarks", "recovery_table.tsv")
    conda:
        PLAN.conda_env
    shell:
        "mmssl recovery-table {input} --out {output} 2> {log}"

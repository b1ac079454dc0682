# Training: one job per (dataset, method, fold); a GPU on the cluster (profiles/slurm),
# where train -> embed -> probe + similarity of one (method, fold) run as one job (group
# "run", set in profiles/slurm).


rule train:
    """Train one method on one fold. Resumes from checkpoint.pt when restarted."""
    input:
        unpack(PLAN.run_inputs),
    output:
        model=res("{dataset}", "models", "{method}", "fold{fold}", "model.pt"),
        metrics=res("{dataset}", "models", "{method}", "fold{fold}", "metrics.tsv"),
    log:
        res("{dataset}", "logs", "train", "{method}", "fold{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks", "train", "{method}", "fold{fold}.tsv")
    params:
        train=PLAN.settings("train"),
        model=PLAN.settings("model"),
    conda:
        PLAN.conda_env
    shell:
        "OMP_NUM_THREADS={threads} mmssl train --store {input.store} --split {input.split} "
        "--method {wildcards.method} --fold {wildcards.fold} --model {output.model} --metrics {output.metrics} "
        "--train-json {params.train:q} --model-json {params.model:q} 2>> {log}"

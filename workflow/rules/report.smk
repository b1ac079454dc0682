# Aggregation: cheap, so it runs on the submit host rather than as a cluster job.


localrules:
    report,


rule report:
    """summary.tsv, table.md and figure.png of one dataset."""
    input:
        report_inputs,
    output:
        summary=report(res("{dataset}", "summary.tsv"), caption="../report/summary.rst", category="{dataset}"),
        table=report(res("{dataset}", "table.md"), caption="../report/table.rst", category="{dataset}"),
        figure=report(res("{dataset}", "figure.png"), caption="../report/figure.rst", category="{dataset}"),
    log:
        res("{dataset}", "logs", "report.log"),
    benchmark:
        res("{dataset}", "benchmarks", "report.tsv")
    params:
        methods=method_list,
    conda:
        "../../envs/mmssl.yaml"
    shell:
        "mmssl report --dataset {wildcards.dataset} --methods {params.methods} --inputs {input} "
        "--summary {output.summary} --table {output.table} --figure {output.figure} 2> {log}"

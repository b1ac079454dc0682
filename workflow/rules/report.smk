# Aggregation: cheap, so it runs on the submit host rather than as a cluster job.


localrules:
    report,


rule report:
    """summary.tsv, table.md and figure.png of one dataset."""
    input:
        PLAN.report_inputs,
    output:
        summary=report(res("{dataset}", "summary.tsv"), caption="../report/summary.rst", category="{dataset}",
                       subcategory="results"),
        table=res("{dataset}", "table.md"),
        table_html=report(res("{dataset}", "table.html"), caption="../report/table.rst", category="{dataset}",
                          subcategory="results"),
        figure=report(res("{dataset}", "figure.png"), caption="../report/figure.rst", category="{dataset}",
                      subcategory="results"),
        provenance=res("{dataset}", "provenance.json"),
    log:
        res("{dataset}", "logs", "report.log"),
    benchmark:
        res("{dataset}", "benchmarks", "report.tsv")
    params:
        methods=PLAN.method_list,
        # K of the cross-validation: the corrected resampled t's n_test/n_train is 1/(K-1)
        n_folds=PLAN.n_folds,
    conda:
        PLAN.conda_env
    shell:
        "mmssl report --dataset {wildcards.dataset} --methods {params.methods} --n-folds {params.n_folds} --inputs {input} "
        "--summary {output.summary} --table {output.table} --table-html {output.table_html} --figure {output.figure} "
        "--provenance {output.provenance} 2> {log}"

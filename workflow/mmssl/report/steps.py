"""The ``report`` step's file-in/file-out entry point (the ``mmssl report`` sub-command,
:mod:`mmssl.report.commands`): one dataset's summary, table and figure, and on request
the table as an HTML page and the versions that made it."""

from __future__ import annotations

from pathlib import Path


def write_report_files(dataset: str, inputs: list[Path], methods: list[str], summary: Path, table: Path, figure: Path,
                       n_folds: int | None, test_train_ratio: float | None, table_html: Path | None = None,
                       provenance: Path | None = None) -> None:
    """summary.tsv, table.md and figure.png (:func:`mmssl.report.tables.write_report`), then
    table.html (table.md as a page) and provenance.json when their paths are given."""
    from mmssl.report.tables import write_report  # pandas and matplotlib: only when reporting

    write_report(dataset, inputs, methods, summary, table, figure, n_folds, test_train_ratio)
    if table_html:
        from mmssl.report.html import write_markdown_page

        write_markdown_page(table, table_html, f"{dataset}: results")
    if provenance:
        from mmssl.io import write_json
        from mmssl.version import provenance as versions

        write_json({"dataset": dataset, "methods": methods, "versions": versions()}, provenance)

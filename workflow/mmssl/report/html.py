"""table.md as a standalone HTML page (table.html), the file Snakemake's report shows inline:
a .md result can only be downloaded there, so the results a reader opens the report for
never showed. markdown-it-py (CommonMark with its table extension) renders it: the same
Markdown, no second table writer to drift."""

from __future__ import annotations

import html
from pathlib import Path

from mmssl.io import write_text

# scoped to the page's one div: the report's landing page embeds the file as it is
# (workflow/report/workflow.rst), and its style must not restyle the report around it
STYLE = (".mmssl-table{font-family:sans-serif;margin:1em;max-width:90em;overflow-x:auto}"
         ".mmssl-table table{border-collapse:collapse;margin:.5em 0 1.5em}"
         ".mmssl-table th,.mmssl-table td{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
         ".mmssl-table th:first-child,.mmssl-table td:first-child{text-align:left}"
         ".mmssl-table thead th{background:#f3f3f3}")


def markdown_page(markdown: str, title: str) -> str:
    """A self-contained HTML page (inline CSS, no scripts) of ``markdown``."""
    from markdown_it import MarkdownIt  # only where a page is written

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><div class='mmssl-table'>\n{body}</div></body></html>\n")


def write_markdown_page(markdown_path: str | Path, html_path: str | Path, title: str) -> Path:
    return write_text(markdown_page(Path(markdown_path).read_text(), title), html_path)

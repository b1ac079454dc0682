"""The report stage: per-dataset summary.tsv, table.md and figure.png (``tables``) and
its sub-command (``commands``)."""

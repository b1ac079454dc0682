"""Reading Snakemake's dry-run output: shared by the workflow tests and benchmarks/bench_dryrun.py."""


def job_counts(output: str) -> dict[str, int]:
    """rule -> jobs (and 'total') from the 'job  count' table Snakemake prints for a dry run."""
    counts, on = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        if on:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
            elif counts and not line.startswith("-"):
                break
    return counts

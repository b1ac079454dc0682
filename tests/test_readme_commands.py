"""Every `snakemake` command the README shows, run as a dry run the way a user types it:
named profiles after `make profiles` (into a temporary XDG config folder), the paper config
with its placeholder data paths pointed at zero-byte stand-ins (benchmarks/bench_dryrun.py
builds them), from a working folder of its own."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def readme_commands() -> list[str]:
    """The `snakemake ...` lines of the README's bash blocks, comments stripped."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("snakemake ")]


def test_the_readme_shows_the_named_profile_commands():
    commands = readme_commands()
    assert any("--profile slurm " in c for c in commands) and any("--profile profiles/local" in c for c in commands)
    assert len(commands) >= 8


@pytest.mark.slow
def test_every_readme_command_plans(tmp_path):
    from bench_dryrun import paper_config
    from make_oasis_tree import make_oasis_tree

    xdg = tmp_path / "xdg"
    make = subprocess.run(["make", "-C", str(ROOT), "profiles", f"XDG_CONFIG_HOME={xdg}"], capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    work = tmp_path / "work"
    (work / "resources" / "configs").mkdir(parents=True)
    paper = paper_config(tmp_path, make_oasis_tree(tmp_path / "oasis3", 12, 0))
    shutil.copy(paper, work / "resources" / "configs" / "paper.yaml")
    (work / "my.yaml").write_text((ROOT / ".test" / "config.yaml").read_text())
    shutil.copytree(ROOT / "profiles", work / "profiles")
    env = {**os.environ, "XDG_CONFIG_HOME": str(xdg), "PYTHONPATH": str(ROOT / "workflow"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    checked = []
    for line in readme_commands():
        args = shlex.split(line)[1:]
        if "--report" in args or ("--software-deployment-method" in args and not shutil.which("conda")):
            continue  # a report is not a plan; conda environments need conda
        cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(ROOT / "Snakefile"), "-n"]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "This was a dry-run" in proc.stdout + proc.stderr or "Nothing to be done" in proc.stdout + proc.stderr, line
        checked.append(line)
    assert any("--profile slurm" in c for c in checked) and any("--profile profiles/local" in c for c in checked)

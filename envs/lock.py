"""The dependency lock: check an environment against it, and write the conda env files from it.

``envs/constraints.txt`` pins every transitive dependency of ``pip install -e .[test,fsl,cluster]``
for Linux x86-64 and Python 3.11-3.13 (environment markers where versions differ). It is
made by ``make lock`` (uv's universal resolver over pyproject.toml's ranges); ``make``
installs with ``-c envs/constraints.txt`` and then runs ``python envs/lock.py check`` so a
venv that drifts from the lock fails loudly instead of testing something else.

Usage:
    python envs/lock.py check [--lock envs/constraints.txt]   # installed == locked, else exit 1
    python envs/lock.py conda [--lock envs/constraints.txt]   # rewrite envs/mmssl.yaml, envs/fsl.yaml

Why hand-written: pip has no "does this venv equal that constraints file" command, and
neither pip-tools nor uv writes conda env files; both jobs are a few lines on top of
``packaging``, which pip itself vendors and our dependencies already install.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

HERE = Path(__file__).resolve().parent
LOCK = HERE / "constraints.txt"
PROJECT = "mmssl"
# torch==2.13.0 from PyPI on Linux is the CUDA build and needs these; the CPU build (the
# wheel a laptop or this project's CI installs) does not, so they may be absent.
CUDA_ONLY_PREFIXES = ("nvidia-", "cuda-", "triton")
# rules need the package's runtime dependencies; these are only for tests and the cluster
# executor, which runs outside the rules' conda environments
NOT_IN_CONDA = {"pytest", "pytest-xdist", "execnet", "iniconfig", "pluggy", "pygments",
                "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"}


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    marker: Marker | None

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()

    def line(self) -> str:
        return f"{self.name}=={self.version}" + (f" ; {self.marker}" if self.marker else "")


def read_lock(path: Path = LOCK) -> list[Pin]:
    """Every ``name==version [; marker]`` line of a uv/pip-compile constraints file."""
    pins = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise SystemExit(f"{path}:{number}: expected an exact pin 'name==version', got {raw!r}")
        pins.append(Pin(canonicalize_name(req.name), spec[0].version, req.marker))
    return pins


def installed() -> dict[str, str]:
    """canonical name -> version of every distribution in this interpreter's environment."""
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def differences(pins: list[Pin], have: dict[str, str]) -> list[str]:
    """What keeps this environment from equalling the lock (empty when it does)."""
    wanted = {p.name: p.version for p in pins if p.applies()}
    problems = []
    for name, version in sorted(have.items()):
        if name == PROJECT:
            continue
        if name not in wanted:
            problems.append(f"{name}=={version} is installed but not in the lock")
        # a local label (2.13.0+cpu) is the same release as the pin 2.13.0, as pip sees it
        elif Version(version).public != Version(wanted[name]).public:
            problems.append(f"{name}=={version} is installed; the lock pins {wanted[name]}")
    for name, version in sorted(wanted.items()):
        if name not in have and not name.startswith(CUDA_ONLY_PREFIXES):
            problems.append(f"{name}=={version} is locked but not installed")
    return problems


# the conda envs are Python 3.11 on Linux x86-64: the lock's markers are evaluated for it
CONDA_MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
                    "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
                    "platform_python_implementation": "CPython", "os_name": "posix"}


# torch's CPU build: PyTorch's own index (PyPI's Linux wheel is the CUDA build)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def conda_env(pins: list[Pin], header: str, conda_deps: list[str], cpu: bool = False) -> str:
    """A conda env file whose pip section pins exactly the lock's versions for Python 3.11
    on Linux x86-64; ``cpu``: torch's CPU build from PyTorch's index, without the CUDA-only
    packages."""
    lines = [header.rstrip(), "channels:"]
    channels = [d for d in conda_deps if d.startswith("channel:")]
    lines += [f"  - {c.removeprefix('channel:')}" for c in channels] or ["  - conda-forge"]
    lines += ["dependencies:"] + [f"  - {d}" for d in conda_deps if not d.startswith("channel:")]
    lines += ["  - pip", "  - pip:"]
    if cpu:
        lines += [f"      - --extra-index-url {CPU_INDEX}"]
    for p in pins:
        if p.name in NOT_IN_CONDA or p.name == "pip" or not (p.marker is None or p.marker.evaluate(CONDA_MARKER_ENV)):
            continue
        if cpu and p.name.startswith(CUDA_ONLY_PREFIXES):
            continue
        version = f"{p.version}+cpu" if cpu and p.name == "torch" else p.version
        lines.append(f"      - {p.name}=={version}")
    return "\n".join(lines) + "\n"


MMSSL_HEADER = """# Conda environment of every rule (snakemake --software-deployment-method conda).
# GENERATED by `make lock` from envs/constraints.txt: edit pyproject.toml, not this file.
# The rules find the mmssl package beside the workflow through PYTHONPATH; this file only
# brings its dependencies, at the versions the tests ran with. torch 2.13.0: the CUDA
# build from PyPI on a Linux GPU node (its nvidia-* pins below apply there)."""
FSL_HEADER = """# The rules' environment with FSL (preprocess.backend: fsl), used by the MRI preprocessing
# rules when that backend is configured. GENERATED by `make lock` from envs/constraints.txt
# (the pip part, fslpy included); FSL's tools come from FSL's own conda channel, pinned here."""
# FSL's tools from FSL's conda channel, at versions of FSL 6.0.7.x releases as public
# container recipes pin them (fsl-base 2401.0, bet2 2111.7, flirt 2111.2 and utils 2203.4 of
# FSL 6.0.7.7; mcflirt 2111.0 of 6.0.7.17; avwutils 2209.2). The channel cannot be reached
# from our CI, so this combination is untested here: see README, Known gaps.
FSL_TOOLS = ["fsl-base=2401.0", "fsl-bet2=2111.7", "fsl-flirt=2111.2", "fsl-mcflirt=2111.0",
             "fsl-utils=2203.4", "fsl-avwutils=2209.2"]


CPU_NOTE = """
# CPU variant (config key conda_torch: cpu): torch 2.13.0+cpu from PyTorch's CPU index, no
# CUDA-only packages (nvidia-*, cuda-*, triton), so a machine without a GPU downloads none."""


def write_conda(pins: list[Pin]) -> None:
    (HERE / "mmssl.yaml").write_text(conda_env(pins, MMSSL_HEADER, ["python=3.11"]))
    (HERE / "mmssl-cpu.yaml").write_text(conda_env(pins, MMSSL_HEADER + CPU_NOTE, ["python=3.11"], cpu=True))
    fsl = ["channel:https://fsl.fmrib.ox.ac.uk/fslconda/public/", "channel:conda-forge", "python=3.11", *FSL_TOOLS]
    (HERE / "fsl.yaml").write_text(conda_env(pins, FSL_HEADER, fsl))
    (HERE / "fsl-cpu.yaml").write_text(conda_env(pins, FSL_HEADER + CPU_NOTE, fsl, cpu=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "conda"])
    parser.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    pins = read_lock(args.lock)
    if args.command == "conda":
        write_conda(pins)
        return 0
    problems = differences(pins, installed())
    if problems:
        print(f"{sys.prefix} does not match {args.lock}:", *problems, sep="\n  ", file=sys.stderr)
        print("Recreate it: rm -rf .venv && make install  (or regenerate the lock: make lock)", file=sys.stderr)
        return 1
    print(f"{sys.prefix} matches {args.lock} ({sum(p.applies() for p in pins)} pins for this platform)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The package's version (from its metadata, as pip installed it) and the provenance every
output records: ``mmssl --version``, ``model.pt``'s meta, the report's provenance.json, the
derivatives' dataset_description.json."""

from __future__ import annotations

import platform
import tomllib
from importlib import metadata
from pathlib import Path

CODE_URL_KEY = "Source"


def package_version() -> str:
    """The installed mmssl's version (package metadata); when not installed, the version in
    the checkout's pyproject.toml (the one place it is written)."""
    try:
        return metadata.version("mmssl")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def code_url() -> str:
    """The project's source URL (pyproject's ``[project.urls] Source``; '' when not installed)."""
    try:
        urls = metadata.metadata("mmssl").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return ""
    return next((u.split(",", 1)[1].strip() for u in urls if u.split(",", 1)[0].strip() == CODE_URL_KEY), "")


def provenance() -> dict[str, str]:
    """mmssl's version and those of the libraries that decide the numbers (no time stamp:
    the same run gives the same file)."""
    versions = {"mmssl": package_version(), "python": platform.python_version()}
    for name in ("torch", "numpy", "scikit-learn", "snakemake"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions

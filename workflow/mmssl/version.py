"""The package's version (from its metadata, as pip installed it) and the provenance every
output records: ``mmssl --version``, ``model.pt``'s meta, the report's provenance.json, the
derivatives' dataset_description.json."""

from __future__ import annotations

import platform
from importlib import metadata

CODE_URL_KEY = "Source"


def package_version() -> str:
    """The installed mmssl's version (package metadata); the source tree's when not installed."""
    try:
        return metadata.version("mmssl")
    except metadata.PackageNotFoundError:
        from mmssl import __version__

        return __version__


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

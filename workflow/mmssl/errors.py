"""Exceptions for input that must be excluded (listed in ``excluded.tsv``) rather than crash the workflow."""

from __future__ import annotations

from pathlib import Path


class BadInputError(Exception):
    """One input file cannot be used; the caller lists ``path`` with ``reason`` in excluded.tsv.

    Raised for corrupt or unreadable NIfTI, a missing or inconsistent TR, too few volumes,
    a 3D image where a 4D series is expected, non-finite values, and the like.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NotEnoughSubjectsError(RuntimeError):
    """Too few subjects are left in some class for the requested cross-validation folds."""

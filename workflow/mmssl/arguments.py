"""argparse helpers shared by the stage command modules (``<stage>/commands.py``): the
arguments several sub-commands declare alike (required paths, a config section as JSON,
the dataset's sources, the log copy of the exclusions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.paths import SOURCES
from mmssl.settings import settings_arg


def add_paths(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Required file arguments (each a Path)."""
    for flag in flags:
        parser.add_argument(flag, required=True, type=Path)


def add_settings(parser: argparse.ArgumentParser, section: str, flag: str = "--settings-json") -> None:
    """A required config section ``section``: a JSON object or a .json file."""
    parser.add_argument(flag, required=True, type=settings_arg, help=f"the {section} config section (JSON or a .json file)")


def add_source_list(parser: argparse.ArgumentParser) -> None:
    """``--sources``: the dataset's sources, in order."""
    parser.add_argument("--sources", nargs="+", required=True, choices=SOURCES, metavar="SOURCE",
                        help=f"the dataset's sources, in order (config key sources; each one of {', '.join(SOURCES)})")


def source_file(text: str) -> tuple[str, Path]:
    """``SOURCE=PATH`` -> (source, path): an argparse ``type``."""
    source, sep, path = text.partition("=")
    if not sep or source not in SOURCES or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SOURCE=PATH with SOURCE one of {', '.join(SOURCES)}")
    return source, Path(path)


def add_log_excluded(parser: argparse.ArgumentParser) -> None:
    """``--log-excluded``: where the exclusions are copied into the rule's log."""
    parser.add_argument("--log-excluded", type=Path,
                        help="a copy of the exclusions that survives a failed job (the rule's log)")

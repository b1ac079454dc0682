"""``mmssl`` command line: one sub-command per workflow step. Each Snakemake rule calls
exactly one of these, so every step can also be run (and debugged) by hand."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

# modules that register sub-commands through add_commands(subparsers)
COMMAND_MODULES = (
    "mmssl.data.commands",
    "mmssl.train_commands",
    "mmssl.evaluate.commands",
    "mmssl.report",
    "mmssl.data.svhn",
    "mmssl.preprocess.discovery_commands",
    "mmssl.preprocess.mri_commands",
)


def json_arg(text: str) -> dict:
    """Parse a --*-json argument; the error names the bad text."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text[:200]}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got: {text[:200]}")
    return value


def path_arg(text: str) -> Path:
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmssl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a step not installed in this version
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # a clear one-line reason in the rule's log instead of a traceback wall
        logging.getLogger("mmssl").error("%s failed: %s", args.command, err)
        if args.verbose:
            raise
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``mmssl`` command line: one sub-command per workflow step. Each Snakemake rule calls
exactly one of these, so every step can also be run (and debugged) by hand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mmssl.version import package_version

# sub-command -> the command module of its stage package, which registers it
# (add_commands(subparsers)); one command module per stage package. Only the module
# of the command being run is imported: every rule is its own process, and importing all
# of torch, sklearn, nilearn and SimpleITK up front cost ~3.5 s per job.
COMMANDS = {
    "prepare-two-view": "mmssl.data.commands",
    "prepare-mnist-svhn": "mmssl.data.commands",
    "prepare-known-mri": "mmssl.data.commands",
    "splits": "mmssl.data.commands",
    "download": "mmssl.data.commands",
    "synthetic-bids": "mmssl.data.commands",
    "discover": "mmssl.bids.commands",
    "preprocess-anat": "mmssl.preprocess.commands",
    "preprocess-bold": "mmssl.preprocess.commands",
    "collect": "mmssl.bids.commands",
    "landmarks": "mmssl.data.commands",
    "pack": "mmssl.data.commands",
    "qc": "mmssl.preprocess.commands",
    "train": "mmssl.train.commands",
    "embed": "mmssl.evaluate.commands",
    "probe": "mmssl.evaluate.commands",
    "similarity": "mmssl.evaluate.commands",
    "recovery": "mmssl.evaluate.commands",
    "recovery-table": "mmssl.evaluate.commands",
    "maps": "mmssl.maps.commands",
    "report": "mmssl.report.commands",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the sub-command ``command`` only, or with all of them (for --help)."""
    parser = argparse.ArgumentParser(prog="mmssl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mmssl {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else sorted(set(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_commands(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_of(argv)).parse_args(argv)
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

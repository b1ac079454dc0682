"""File-in/file-out entry points of one scan's preprocessing (the ``preprocess-anat`` and
``preprocess-bold`` sub-commands, :mod:`mmssl.preprocess.commands`).

Bad input, one policy: only :class:`~mmssl.errors.BadInputError` (an error that
describes the input: unreadable file, implausible header, too few volumes, failed
registration, ...) excludes a scan. The job then succeeds with the reason in its status
file and empty placeholders for its image outputs, so the rest of the dataset goes on.
Any other exception is a bug or a broken installation: the job fails and Snakemake removes
its outputs; nothing is excluded silently.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mmssl.bids.collect import write_status
from mmssl.errors import BadInputError
from mmssl.paths import ALFF_DERIVATIVES, scan_prefix

if TYPE_CHECKING:  # the imaging libraries: only when a scan is preprocessed
    from mmssl.preprocess.falff import FalffSettings
    from mmssl.preprocess.settings import MriSettings


def excluding_bad_input(source: str | Path, out: Mapping[str, str | Path], run: Callable[[], object]) -> int:
    """Run one scan's preprocessing (``run``), writing its status ``out["status"]``: header
    only on success; on BadInputError the reason, with every other output in ``out``
    replaced by an empty placeholder. Exit status 0 either way; other errors propagate."""
    from mmssl.preprocess.volumes import write_placeholders

    try:
        run()
    except BadInputError as error:
        print(f"excluded: {source}: {error.reason}", file=sys.stderr)
        write_placeholders([path for key, path in out.items() if key != "status"])
        write_status(out["status"], source, error.reason)
        return 0
    write_status(out["status"], source, None)
    return 0


def preprocess_anat_scan(image: Path, suffix: str, out: dict[str, Path], settings: MriSettings) -> int:
    """One structural image (BIDS ``suffix``: T1w, T2w or FLAIR) -> the derivatives ``out``
    (key -> path, mmssl.paths.derivative_specs), under the bad-input policy above."""
    from mmssl.preprocess.pipeline import preprocess_anat_files

    found, _ = scan_prefix(image)
    if found != suffix:
        raise ValueError(f"--image {image} is a BIDS {found} image, not the --suffix {suffix} given")
    return excluding_bad_input(image, out, lambda: preprocess_anat_files(image, suffix, out, settings))


def preprocess_bold_scan(bold: Path, tr: float | None, tr_source: str | None, out: dict[str, Path],
                         settings: MriSettings, falff_settings: FalffSettings) -> int:
    """One BOLD run -> the derivatives ``out`` (ALFF's all or none), under the bad-input
    policy above. ``tr``: its RepetitionTime from the sidecars (None: the header's), named
    by ``tr_source`` in messages."""
    from mmssl.preprocess.falff import GivenTR
    from mmssl.preprocess.pipeline import preprocess_bold_files

    given = [key for key in ALFF_DERIVATIVES if key in out]
    if given and len(given) != len(ALFF_DERIVATIVES):
        raise ValueError(f"preprocess-bold: give all of {['--out-' + k.lower().replace('_', '-') for k in ALFF_DERIVATIVES]} or none")
    given_tr = GivenTR(tr, tr_source or "the metadata") if tr is not None else None
    return excluding_bad_input(bold, out, lambda: preprocess_bold_files(bold, given_tr, out, settings, falff_settings))

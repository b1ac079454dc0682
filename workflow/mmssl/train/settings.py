"""``train`` settings (the config's ``train`` section) and what they mean for precision:
which runs a checkpoint may resume across (:data:`RUNTIME_KEYS`) and when bf16 autocast
is on (:func:`autocast_enabled`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from mmssl.augment import AugmentSettings
from mmssl.settings import schema_settings


@schema_settings("train")
class TrainSettings:
    """epochs: paper 50 (natural images) / 200 (OASIS-3). lr: RAdam learning rate (4e-4).
    scheduler: 'onecycle' (paper, max_lr 0.01) or 'none' (authors' OASIS-3 config).
    balanced: class-balanced sampling (OASIS-3).
    device: 'auto' (CUDA when usable, else CPU with a warning), 'cpu', 'cuda' or 'cuda:N'
    (an error naming the node when CUDA is not usable; see :func:`mmssl.device.select_device`).
    amp: 'auto' (bf16 autocast on CUDA, fp32 on CPU), 'bf16' (bf16 autocast on any device,
    CPU included) or 'off' (fp32); the booleans of older configs read true = 'auto',
    false = 'off' (so YAML's unquoted ``off`` means 'off').
    max_batches: cap on batches per epoch (0 = no cap; for smoke tests only).
    prefetch: batches a background thread prepares ahead of the step (0 = none; see
    :mod:`mmssl.data.prefetch`). metrics.tsv's data_fraction shows whether it is enough.
    augment: the ``train.augment`` mapping (see :class:`mmssl.augment.AugmentSettings`).
    incomplete_samples: 'use' (samples lacking a source take part in the terms they can) or 'drop'
    (complete samples only); see :meth:`mmssl.train.loop.Trainer.training_rows`.

    Every default is the config schema's (``train`` section), read when a field is left
    out; the rule always passes the full validated section."""

    epochs: int
    batch_size: int
    lr: float
    scheduler: str
    max_lr: float
    seed: int
    device: str
    prefetch: int
    balanced: bool
    augment: dict[str, Any]
    amp: str
    divergence_retries: int
    divergence_factor: float
    jump_factor: float
    jump_epochs: int
    grad_clip: float
    lr_drop: float
    on_divergence: str
    max_batches: int
    select: str
    incomplete_samples: str

    def __post_init__(self):
        amp = ("auto" if self.amp else "off") if isinstance(self.amp, bool) else self.amp  # older boolean configs
        if amp not in AMP_MODES:
            raise ValueError(f"train.amp must be one of {list(AMP_MODES)} (or true = 'auto', false = 'off'), got {self.amp!r}")
        object.__setattr__(self, "amp", amp)
        # every augment key, checked: {"pad": 8} and {"pad": 8, "flip": 0.0} are one setting
        # (and one checkpoint fingerprint)
        object.__setattr__(self, "augment", asdict(AugmentSettings.from_config(self.augment)))


AMP_MODES = ("auto", "bf16", "off")
# settings that change where and how fast a run executes, not what it trains: a checkpoint
# resumes across them (a pre-empted GPU job picked up on another node, with or without bf16)
RUNTIME_KEYS = ("device", "amp", "prefetch")


def autocast_enabled(amp: str, device: torch.device) -> bool:
    """bf16 autocast for train.amp on ``device``: 'auto' only on CUDA, 'bf16' anywhere."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


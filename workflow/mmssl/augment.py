"""Batched augmentation on tensors already on the training device (paper 3.1.3: random
crops and flips for OASIS-3). Working on whole batches keeps the data loader from being
the bottleneck on a GPU. The same crop and flip are applied to every source of a sample,
as in the authors' code, so paired volumes stay spatially aligned.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from mmssl.settings import schema_settings


@schema_settings("train.augment")
class AugmentSettings:
    """pad: voxels of zero padding on each side before a random crop back to the input
    size (authors' code: 8; 0 = off). flip: probability of a left-right flip (the
    released config keeps flips off; the paper mentions them). Defaults: the config
    schema's ``train.augment``."""

    pad: int
    flip: float


    @property
    def active(self) -> bool:
        return self.pad > 0 or self.flip > 0


def random_pad_crop(xs: dict[str, torch.Tensor], pad: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """xs: source -> (B, C, *S). Zero-pad by ``pad`` and crop back to S at a random offset
    drawn per sample (shared by all sources)."""
    first = next(iter(xs.values()))
    b, dims = first.shape[0], first.dim() - 2
    offsets = torch.randint(0, 2 * pad + 1, (b, dims), generator=gen)
    out = {}
    for name, x in xs.items():
        padded = F.pad(x, (pad, pad) * dims)
        size = x.shape[2:]
        crops = []
        for i in range(b):
            sl = tuple(slice(int(o), int(o) + s) for o, s in zip(offsets[i], size))
            crops.append(padded[(i, slice(None)) + sl])
        out[name] = torch.stack(crops)
    return out


def random_flip(xs: dict[str, torch.Tensor], p: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Flip along the first spatial axis (left-right in RAS volumes) with probability p
    per sample, the same samples in every source."""
    first = next(iter(xs.values()))
    flip = (torch.rand(first.shape[0], generator=gen) < p).to(first.device)
    view = (-1,) + (1,) * (first.dim() - 1)
    return {k: torch.where(flip.view(view), x.flip(2), x) for k, x in xs.items()}


def augment(xs: dict[str, torch.Tensor], settings: AugmentSettings, gen: torch.Generator) -> dict[str, torch.Tensor]:
    if settings.pad > 0:
        xs = random_pad_crop(xs, settings.pad, gen)
    if settings.flip > 0:
        xs = random_flip(xs, settings.flip, gen)
    return xs

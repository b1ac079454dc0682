"""DCGAN encoder (paper 3.3; layer details from the authors' code, see
``shared/papers/authors-code-facts.md``).

A stack of stride-2 convolutions (kernel 4, padding 1, no bias, LeakyReLU 0.2, BatchNorm
from the second layer on) halves the side until it is 4; a last kernel-4 convolution maps
the 4-sided map to a ``latent``-channel 1-sided map, flattened into ``z``. The local
feature map ``c`` is the *raw* convolution output (before BatchNorm and activation) of
the layer whose output side is 8.

Works for 2D and 3D inputs whose side is a power of two >= 16 (32 for images, 64 or 32
for MRI volumes).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from mmssl.types import SourceSpec

LEAKY_SLOPE = 0.2
LOCAL_SIDE = 8  # paper: "features are taken from the layer with a feature side size 8"


class EncoderOutput(NamedTuple):
    """z: (B, latent). c: (B, C_c, 8, 8) in 2D or (B, C_c, 8, 8, 8) in 3D."""

    z: torch.Tensor
    c: torch.Tensor


def conv_layer(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def batchnorm_layer(dims: int) -> type[nn.Module]:
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d


def n_downsamplings(size: int) -> int:
    """Number of stride-2 layers that take ``size`` down to 4."""
    n = math.log2(size / 4)
    if size < 16 or n != int(n):
        raise ValueError(f"input side must be a power of two >= 16, got {size}")
    return int(n)


def local_layer_index(size: int) -> int:
    """Index of the stride-2 layer whose output side is 8 (the source of ``c``)."""
    return n_downsamplings(size) - 2


def local_channels(size: int, width: int) -> int:
    """Channels of ``c``: 64 for 32² inputs, 128 for 64³ inputs at width 32."""
    return width * 2 ** local_layer_index(size)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform with the leaky-ReLU gain; BatchNorm weight 1, bias 0."""
    gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DCGANEncoder(nn.Module):
    """x: (B, channels, size, size[, size]) -> EncoderOutput(z (B, latent), c (B, C_c, 8, ...)).

    latent: size of z; width: channels of the first layer. No defaults: the values are
    ``model.latent`` and ``model.width`` of the config schema (their only home; paper 64, 32)."""

    def __init__(self, spec: SourceSpec, latent: int, width: int) -> None:
        super().__init__()
        conv, bn = conv_layer(spec.dims), batchnorm_layer(spec.dims)
        n = n_downsamplings(spec.size)
        self.spec, self.latent = spec, latent
        self.local_index = local_layer_index(spec.size)
        self.convs = nn.ModuleList()
        self.post = nn.ModuleList()  # BN (not on the first layer) + LeakyReLU after each conv
        in_ch = spec.channels
        for i in range(n):
            out_ch = width * 2**i
            self.convs.append(conv(in_ch, out_ch, 4, 2, 1, bias=False))
            norm = [bn(out_ch)] if i > 0 else []
            self.post.append(nn.Sequential(*norm, nn.LeakyReLU(LEAKY_SLOPE, inplace=False)))
            in_ch = out_ch
        self.head = conv(in_ch, latent, 4, 1, 0, bias=False)
        self.local_channels = width * 2**self.local_index
        init_weights(self)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        c = None
        h = x
        for i, (layer, post) in enumerate(zip(self.convs, self.post)):
            h = layer(h)
            if i == self.local_index:
                c = h
            h = post(h)
        z = self.head(h).flatten(1)
        assert c is not None
        return EncoderOutput(z=z, c=c)

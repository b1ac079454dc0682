"""DCGAN decoder mirroring ``DCGANEncoder`` (paper 3.3: "for decoder-based methods, we
also utilized DCGAN decoder", one layer fewer for 32x32 images, as the encoder).

z (B, latent) is read as a 1-sided map; a kernel-4 stride-1 transposed convolution
takes it to a 4-sided map with the encoder's deepest channel count; stride-2
transposed convolutions (kernel 4, padding 1, no bias, BatchNorm + ReLU) double the
side and halve the channels until the side is ``size / 2``; a last stride-2 transposed
convolution maps ``width`` channels to the source's channels.

The output is unbounded (logits for a Bernoulli / BCE loss, the mean itself for a
Gaussian / MSE loss): the loss decides the link function, so no activation here.
"""

from __future__ import annotations

import torch
from torch import nn

from mmssl.models.encoders import batchnorm_layer, init_weights, n_downsamplings
from mmssl.types import SourceSpec


def conv_transpose_layer(dims: int) -> type[nn.Module]:
    return nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d


class DCGANDecoder(nn.Module):
    """z: (B, latent) -> x_hat: (B, channels, size, size[, size]) (logits / means).

    Channel plan for ``width`` w and n = log2(size / 4) stride-2 layers (as the encoder):
    latent -> w*2^(n-1) (side 4) -> w*2^(n-2) (8) -> ... -> w (size/2) -> channels (size).
    """

    def __init__(self, spec: SourceSpec, latent: int, width: int) -> None:
        super().__init__()
        convt, bn = conv_transpose_layer(spec.dims), batchnorm_layer(spec.dims)
        n = n_downsamplings(spec.size)
        self.spec, self.latent = spec, latent
        deepest = width * 2 ** (n - 1)
        layers: list[nn.Module] = [convt(latent, deepest, 4, 1, 0, bias=False), bn(deepest), nn.ReLU()]
        for i in range(n - 1, 0, -1):
            in_ch, out_ch = width * 2**i, width * 2 ** (i - 1)
            layers += [convt(in_ch, out_ch, 4, 2, 1, bias=False), bn(out_ch), nn.ReLU()]
        # the output layer keeps a bias: it sets the per-channel base level of the logits
        layers.append(convt(width, spec.channels, 4, 2, 1, bias=True))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(
                f"decoder for {self.spec.name!r} expects z of shape (B, {self.latent}), got {tuple(z.shape)}"
            )
        return self.net(z.reshape(z.shape[0], self.latent, *([1] * self.spec.dims)))

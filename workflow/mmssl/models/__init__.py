"""Networks: DCGAN encoders (2D and 3D), projection heads and decoders."""

from mmssl.models.encoders import DCGANEncoder, EncoderOutput
from mmssl.types import SourceSpec
from mmssl.models.heads import build_latent_head, build_local_head

__all__ = ["DCGANEncoder", "EncoderOutput", "SourceSpec", "build_latent_head", "build_local_head"]

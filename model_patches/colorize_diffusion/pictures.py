"""The picture encodings the chain's steps share, for every family: a picture's VAE latent at the generation size,
and the background-only reference (the character whitened out of it, the official bleaching)."""
from __future__ import annotations

import torch.nn.functional as F

from ...errors import ColorizerInputError
from ...preprocess.masks import bleach
from .prompt import rows_for


def vae_latent(vae, colorizer, image, gen_hw, device, node):
    """VAE latent of `image` ([-1,1]) squashed to the generation size (official: plain bicubic), in the family's
    latent scale, on `device`."""
    if vae is None:
        raise ColorizerInputError(f"{node} VAE-encodes the picture (v2): connect a VAE")
    pixels = F.interpolate(image.float(), size=gen_hw, mode="bicubic", align_corners=False)
    latent = vae.encode(((pixels + 1) / 2).movedim(1, -1))
    return rows_for(colorizer.latent_format.process_in(latent), image.shape[0], "the VAE latent").to(device)


def background_only(image, reference_mask, threshold):
    """The official bleaching: where(mask < threshold, reference, white) at the reference's size."""
    m = reference_mask.to(image.device)
    if tuple(m.shape[-2:]) != tuple(image.shape[-2:]):
        raise ColorizerInputError(f"reference_mask is {m.shape[-1]}x{m.shape[-2]}, the reference is "
                                  f"{image.shape[-1]}x{image.shape[-2]} (after padding): make the mask from the "
                                  "reference picture that was encoded")
    return bleach(image, rows_for(m, image.shape[0], "reference_mask"), threshold)

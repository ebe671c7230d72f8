"""The XL app's "Latent copy BG input": outside the character, every step after the first samples from the
background picture's latent re-noised with the run's own initial noise (official `DiffuserDenoiser`).

Official: after each scheduler step but the last, x ← (1−M)·add_noise(bg, x_T, t_next) + M·x, M = mask > threshold
(batch element 0 of the latent and of the conditional mask; sdxl threshold 0.5, xlv2 the Sketch mask threshold).
In ComfyUI's sampler space (x = x_t/√ᾱ) the re-noised background is bg + σ·noise; blending the model input of
every call but the first is the same thing for any sampler whose update acts pixel by pixel (Euler = DDIM), because
the background region is overwritten before it is used again and the last step returns the model's prediction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LATENT_COPY_KEY = "colorize_diffusion_latent_copy"    # conditioning entry (the guider reads it)


@dataclass(frozen=True)
class LatentCopy:
    latent: torch.Tensor          # [B,4,h,w] background latent (×scale factor); element 0 is used
    mask: torch.Tensor            # [B,1,h,w] latent-size sketch mask; element 0 is used
    threshold: float = 0.5

    def keep(self, device, dtype) -> torch.Tensor:
        """M: 1 where the sampled latent is kept (the character), 0 where the background is copied. [1,1,h,w]"""
        return (self.mask[:1] > self.threshold).to(device=device, dtype=dtype)

    def blend(self, x: torch.Tensor, sigma, noise: torch.Tensor) -> torch.Tensor:
        """x (sampler space) with the background region replaced by the re-noised background latent."""
        if tuple(self.latent.shape[-2:]) != tuple(x.shape[-2:]):
            raise ValueError(f"latent copy: background latent {tuple(self.latent.shape[-2:])} vs sampled latent "
                             f"{tuple(x.shape[-2:])}")
        m = self.keep(x.device, x.dtype)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
        background = self.latent[:1].to(x.device, x.dtype) + sigma * noise.to(x.device, x.dtype)
        return m * x + (1 - m) * background

"""ColorFlow's guided super-resolution (GSRP) on ComfyUI's own VAE: the colour result and the black-and-white page
are encoded by the VAE's encoder, whose features at five points (conv_in output, each down level's output) are
read; the GSRP network combines each pair; the colour latent (a sample of its posterior, without the scaling
factor) is decoded with those maps added to the decoder at the mirrored points (the deepest before the mid block,
then one before each up level), and clamped to [-1, 1].

Plain torch over the modules of `comfy.ldm.models.autoencoder.AutoencoderKL` (`VAE.first_stage_model`); ComfyUI
loads and casts the VAE and, in its own ModelPatcher, the GSRP network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ...errors import ColorizerInputError, ColorizerLoadError
from ...weight_files import load_strict, read_state_dict, with_batch_counters
from .networks.gsrp import GuidedSuperResolution
from .vae_features import decode_with_features, encoder_features, posterior_sample


@dataclass
class SuperResolved:
    output: torch.Tensor                 # [-1, 1]
    decoded: torch.Tensor                # before the clamp
    latent: torch.Tensor
    colour_features: list
    page_features: list
    maps: list


def super_resolve(first_stage, network: GuidedSuperResolution, colour: torch.Tensor, page: torch.Tensor,
                  eps: torch.Tensor, batch_statistics: bool = True) -> SuperResolved:
    """One picture (batch 1: with batch statistics the batch is the statistics' population): `colour` and
    `page` NCHW in [-1, 1] of the same size, a multiple of the VAE's downscale."""
    moments, colour_features = encoder_features(first_stage, colour)
    _, page_features = encoder_features(first_stage, page)
    if len(colour_features) != len(network.two_layer_resnets):
        raise ColorizerInputError(f"this VAE gives {len(colour_features)} encoder feature maps, the guided "
                                  f"super-resolution network reads {len(network.two_layer_resnets)}: use the SD VAE "
                                  "it was trained with")
    got = [int(f.shape[1]) for f in colour_features]
    if got != network.channels:
        raise ColorizerInputError(f"VAE encoder channels {got} do not match the guided super-resolution network's "
                                  f"{network.channels}: use the SD VAE it was trained with")
    maps = network(colour_features, page_features, batch_statistics)
    z = posterior_sample(moments, eps)
    decoded = decode_with_features(first_stage, z, maps)
    return SuperResolved(decoded.clamp(-1, 1), decoded, z, colour_features, page_features, maps)


def load_network(path: str) -> GuidedSuperResolution:
    """`MultiResNetModel.bin` (or a safetensors copy): every key read, none missing."""
    name = os.path.basename(path)
    sd = read_state_dict(path, "guided super-resolution file")
    try:
        channels = GuidedSuperResolution.channels_of(sd)
    except (ValueError, KeyError):
        raise ColorizerLoadError(f"{name} is not ColorFlow's guided super-resolution network (MultiResNetModel.bin: "
                                 "two_layer_resnets.* keys)") from None
    net = GuidedSuperResolution(channels)
    load_strict(net, with_batch_counters(net, sd), source=name, dtype=torch.float32,
                what=f"guided super-resolution network of channels {channels}")
    return net.eval()

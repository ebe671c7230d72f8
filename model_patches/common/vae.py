"""A KL VAE state dict as ComfyUI's VAE, whatever its size: ComfyUI's own detection for the released layout, a
layout read from the shapes otherwise (ColorizeDiffusion checkpoints' first_stage_model.*, diffusers vae/ folders)."""
from __future__ import annotations


STANDARD_VAE = {"ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "z_channels": 4}


def vae_layout(vae_sd: dict) -> dict:
    """The KL autoencoder's ddconfig read from its shapes (ch, ch_mult, num_res_blocks, z_channels)."""
    ch = int(vae_sd["encoder.conv_in.weight"].shape[0])
    levels = 1 + max(int(k.split(".")[2]) for k in vae_sd if k.startswith("encoder.down."))
    mult = [int(vae_sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) // ch for i in range(levels)]
    blocks = 1 + max(int(k.split(".")[4]) for k in vae_sd if k.startswith("encoder.down.0.block."))
    z = int(vae_sd["decoder.conv_in.weight"].shape[1])
    return {"ch": ch, "ch_mult": mult, "num_res_blocks": blocks, "z_channels": z}


def build_vae(vae_sd: dict, name: str):
    """ComfyUI's VAE for a KL VAE state dict in the ldm layout (ComfyUI's own detection for the released layout;
    a layout read from the shapes otherwise)."""
    import comfy.sd

    layout = vae_layout(vae_sd)
    if layout == STANDARD_VAE:
        return comfy.sd.VAE(sd=vae_sd)
    ddconfig = {"double_z": True, "resolution": 256, "in_channels": 3, "out_ch": 3, "attn_resolutions": [],
                "dropout": 0.0, **layout}
    return comfy.sd.VAE(sd=vae_sd, config={"params": {"embed_dim": layout["z_channels"], "ddconfig": ddconfig}})

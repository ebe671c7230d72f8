"""Load ColorizeDiffusion Checkpoint: an official v1/v1.5/v2 file → MODEL, COLORIZER, VAE."""
from __future__ import annotations

import folder_paths

from ..model_patches.checkpoint import load_checkpoint
from ..errors import ColorizerLoadError
from ..model_folders import CHECKPOINTS


class ColorizeDiffusionCheckpointLoader:
    DESCRIPTION = ("Loads an official ColorizeDiffusion checkpoint (v1 'mult', v1.5 'switch', v2) from "
                   "models/colorizediffusion. The family is read from the weights; the prediction type follows "
                   "the official file-name rule ('eps' in the name → eps, otherwise v) unless overridden.")
    CATEGORY = "ColorizeDiffusion"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "COLORIZER", "VAE")
    RETURN_NAMES = ("model", "colorizer", "vae")
    OUTPUT_TOOLTIPS = ("the SD2.1 UNet of the checkpoint (patch it with ColorizeDiffusion Conditioning)",
                       "the sketch encoder, LoRA and (v1.5/v2) context, background and style networks",
                       "the checkpoint's VAE")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ckpt_name": (folder_paths.get_filename_list(CHECKPOINTS),
                          {"tooltip": "a file in models/colorizediffusion"}),
            "prediction": (["auto", "eps", "v"], {"default": "auto",
                           "tooltip": "auto: 'eps' in the file name → eps, otherwise v (official rule)"}),
        }}

    def load(self, ckpt_name, prediction="auto"):
        path = folder_paths.get_full_path(CHECKPOINTS, ckpt_name)
        if path is None:
            raise ColorizerLoadError(f"{ckpt_name} not found in models/colorizediffusion "
                                     f"(searched: {', '.join(folder_paths.get_folder_paths(CHECKPOINTS))})")
        loaded = load_checkpoint(path, prediction=prediction)
        return loaded.model, loaded.colorizer, loaded.vae


NODE_CLASS_MAPPINGS = {"ColorizeDiffusionCheckpointLoader": ColorizeDiffusionCheckpointLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"ColorizeDiffusionCheckpointLoader": "Load ColorizeDiffusion Checkpoint"}

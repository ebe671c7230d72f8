"""Load ColorizeDiffusion Checkpoint: an official v1/v1.5/v2 file → MODEL, COLORIZER, VAE."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..errors import ColorizerLoadError
from ..model_folders import CHECKPOINTS, checkpoint_names, file_path
from ..model_patches.colorize_diffusion.checkpoint import MissingVAE, load_checkpoint
from .io_types import CATEGORY, Colorizer

VAE_OUTPUT = 2


def output_used(prompt, node_id, slot: int) -> bool:
    """Whether any node of the queued prompt reads output `slot` of node `node_id` (False when unknown)."""
    if not isinstance(prompt, dict) or node_id is None:
        return False
    for node in prompt.values():
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(node_id) and value[1] == slot:
                return True
    return False


class CheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionCheckpointLoader", display_name="Load ColorizeDiffusion Checkpoint",
            category=CATEGORY,
            description=("Loads an official ColorizeDiffusion checkpoint — SD2.1 (v1 'mult', v1.5 'switch', v2) or "
                         "XL (sdxl, xlv2) — from models/colorizediffusion. The family is read from the weights; the "
                         "prediction type follows the official file-name rule ('eps' in the name → eps, otherwise v) "
                         "unless overridden."),
            inputs=[
                io.Combo.Input("ckpt_name", options=checkpoint_names(),
                               tooltip="a file in models/colorizediffusion"),
                io.Combo.Input("prediction", options=["auto", "eps", "v"], default="auto",
                               tooltip="auto: 'eps' in the file name → eps, otherwise v (official rule)"),
            ],
            outputs=[
                io.Model.Output(display_name="model",
                                tooltip="the UNet of the checkpoint, SD2.1 or SDXL-shaped (patched by "
                                        "ColorizeDiffusion Apply Sketch)"),
                Colorizer.Output(display_name="colorizer", tooltip=(
                    "the sketch encoder, LoRA and the family's context, background, style and reference networks")),
                io.Vae.Output(display_name="vae", tooltip="the checkpoint's VAE"),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, ckpt_name, prediction="auto"):
        loaded = load_checkpoint(file_path(CHECKPOINTS, ckpt_name), prediction=prediction)
        hidden = cls.hidden
        if isinstance(loaded.vae, MissingVAE) and hidden is not None and \
                output_used(hidden.prompt, hidden.unique_id, VAE_OUTPUT):
            raise ColorizerLoadError(
                f"{ckpt_name} contains no VAE (no first_stage_model.* keys), but this loader's vae output is "
                "connected: load one with a 'Load VAE' node (the SD2.1 VAE) and connect that instead")
        return io.NodeOutput(loaded.model, loaded.colorizer, loaded.vae)


NODES = [CheckpointLoader]

"""ColorizeDiffusion Attention Map: the XL app's attention-map visualisation as a node, for every family."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..model_patches.colorize_diffusion import attention_maps as maps
from ..model_patches.colorize_diffusion.prompt import prompt_of
from ..preprocess import convert
from .io_types import CATEGORY, fraction


class AttentionMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionAttentionMap", display_name="ColorizeDiffusion Attention Map", category=CATEGORY,
            description=(
                "Where one spot of the picture looks: the cross-attention of a query cell (16-pixel grid on the "
                "generated picture) over the reference tokens, shown on the reference, or its self-attention over "
                "the picture, shown on the picture; one map per chosen transformer block, heads averaged or maxed "
                "(the XL app's Attention Map Visualization). Runs one UNet evaluation of the sampled latent "
                "re-noised to the chosen step."),
            inputs=[
                io.Model.Input("model", tooltip="the MODEL the sampler used (Apply Sketch's, or a node after it)"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent", tooltip="the sampled latent"),
                io.Image.Input("picture", tooltip="the decoded picture (the self-attention maps are drawn on it)"),
                io.Image.Input("reference", tooltip="the reference picture (the cross-attention maps are drawn on it)"),
                io.Combo.Input("attention", options=list(maps.KINDS), default="cross",
                               tooltip="cross: over the reference tokens; self: over the picture's own tokens"),
                io.Int.Input("query_row", default=32, min=0, max=255, tooltip="row of the 16-pixel grid"),
                io.Int.Input("query_col", default=32, min=0, max=255, tooltip="column of the 16-pixel grid"),
                io.String.Input("blocks", default="all", tooltip=(
                    "transformer blocks in depth-first order: 'all', or indices and ranges such as 0,4-6 (SD2.1: "
                    "0-15, XL: 0-69)")),
                io.Combo.Input("heads", options=list(maps.AGGREGATIONS), default="mean",
                               tooltip="how the attention heads are combined"),
                fraction("step", 0.95, "which step of the schedule (0 = first, 1 = last; the app shows the last)"),
                io.Int.Input("seed", default=0, min=0, max=2 ** 31 - 1, tooltip="noise for the re-noising"),
            ],
            outputs=[io.Image.Output(display_name="maps", tooltip="one overlay per block, with the query cell boxed")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, picture, reference, attention="cross", query_row=32,
                query_col=32, blocks="all", heads="mean", step=0.95, seed=0):
        prompt = prompt_of(positive, negative, "ColorizeDiffusion Attention Map")
        base = convert.rgb(convert.check_image(picture if attention == "self" else reference))[0]
        return io.NodeOutput(maps.attention_maps(model, positive, negative, prompt.size, latent["samples"][:1], base,
                                                 attention, maps.Query(query_row, query_col), blocks, heads,
                                                 float(step), seed))


NODES = [AttentionMap]

"""ColorizeDiffusion Attention Map: the XL app's attention-map visualisation as a node, for every family."""
from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from ..errors import ColorizerInputError
from ..model_patches.colorize_diffusion import attention_maps as maps
from ..model_patches.colorize_diffusion.prompt import prompt_of
from ..model_patches.colorize_diffusion.guidance import guider
from ..model_patches.colorize_diffusion.unet_patches import transformer_blocks
from ..preprocess import convert
from .io_types import CATEGORY, fraction


def evaluate_once(model, positive, negative, latent: torch.Tensor, progress: float, seed: int) -> None:
    """One UNet evaluation of the conditional pass on `latent` re-noised to the step at `progress` (0 = the first
    step, 1 = the last) with the noise of `seed`."""
    import comfy.samplers

    sampling = model.get_model_object("model_sampling")
    t = torch.tensor([(1.0 - progress) * 999.0])
    sigma = float(sampling.sigma(t).reshape(-1)[0])
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(int(seed)))

    def one_call(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        return model_k(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))

    g = guider(model, positive, negative, None, 1.0, 1.0)
    g.sample(noise, latent, comfy.samplers.KSAMPLER(one_call), torch.tensor([sigma, 0.0]), seed=int(seed),
             disable_pbar=True)


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
        height, width = prompt.size
        if query_row * maps.CELL >= height or query_col * maps.CELL >= width:
            raise ColorizerInputError(f"query cell ({query_row}, {query_col}) is outside the {width}x{height} picture "
                                      f"(at most row {(height - 1) // maps.CELL}, column {(width - 1) // maps.CELL})")
        samples = latent["samples"][:1]
        dm = model.get_model_object("diffusion_model")
        found = transformer_blocks(dm)
        chosen = maps.parse_blocks(blocks, len(found))
        which = "attn2" if attention == "cross" else "attn1"
        modules = {i: model.get_model_object(f"diffusion_model.{found[i][1]}.{which}") for i in chosen}
        recorder = maps.MapRecorder(attention, maps.Query(query_row, query_col), (height, width), heads)
        recorder.attach(modules)
        try:
            evaluate_once(model, positive, negative, samples, float(step), seed)
        finally:
            recorder.detach()
        base = convert.rgb(convert.check_image(picture if attention == "self" else reference))[0]
        out = []
        for index in chosen:
            values, grid, _ = recorder.maps[index]
            box = None
            if attention == "self":
                sy, sx = base.shape[0] / height, base.shape[1] / width
                box = (query_row * maps.CELL * sy, query_col * maps.CELL * sx,
                       (query_row + 1) * maps.CELL * sy, (query_col + 1) * maps.CELL * sx)
            out.append(maps.heatmap_overlay(base, values, grid, box))
        return io.NodeOutput(torch.stack(out))


NODES = [AttentionMap]

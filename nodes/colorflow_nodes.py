"""ColorFlow's colorizers in the graph: load a released ColorFlow folder, patch the base MODEL with it and build
its conditioning from a retrieval canvas, sample with the official schedules, take the page out of the canvas, and
sharpen it against the original page (guided super-resolution). Model code: model_patches/colorflow/."""
from __future__ import annotations

import os

from comfy_api.v0_0_2 import io

from ..comfy_compat import reloadable_unet_patcher
from ..errors import ColorizerInputError, ColorizerLoadError
from ..model_folders import COLORFLOW, subfolder_path, subfolders
from ..model_patches.colorflow import diffusers_bases, sampling
from ..model_patches.colorflow.colorizer import condition, load_colorizer
from ..model_patches.colorflow.files import SUPER_RESOLUTION_FILE
from ..model_patches.colorflow.super_resolution import load_network, super_resolve_pages
from ..preprocess import convert
from .io_types import CATEGORY, ColorFlow, ColorFlowSuperResolution
from .loader_nodes import output_used

COLORFLOW_CATEGORY = f"{CATEGORY}/ColorFlow"


def _guider_folders() -> list[str]:
    return subfolders(COLORFLOW, lambda p: os.path.isfile(os.path.join(p, "config.json")))


def _super_resolution_files() -> list[str]:
    return subfolders(COLORFLOW, lambda p: os.path.isfile(os.path.join(p, SUPER_RESOLUTION_FILE)))


def _folder(name: str) -> str:
    path = subfolder_path(COLORFLOW, name)
    if path is None:
        raise ColorizerLoadError(f"{name} not found in models/colorflow (copy the released sketch/, shading/ or "
                                 "GraySD/ folder of TencentARC/ColorFlow there)")
    return path


class LoadColorFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadColorFlow", display_name="ColorFlow Load Colorizer",
            category=COLORFLOW_CATEGORY,
            description=("A released ColorFlow colorizer folder from models/colorflow: sketch/ and shading/ (PixArt-"
                         "alpha: line art, shaded line art) or GraySD/ (SD1.5: grey, screentoned pages) — the "
                         "ColorGuider (config.json + weights) and the base's LoRA, read unchanged, every key checked."),
            inputs=[io.Combo.Input("colorizer", options=_guider_folders(),
                                   tooltip="a folder of models/colorflow holding config.json")],
            outputs=[ColorFlow.Output(display_name="colorflow")],
        )

    @classmethod
    def execute(cls, colorizer):
        return io.NodeOutput(load_colorizer(_folder(colorizer)))


class ColorFlowConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionColorFlowConditioning", display_name="ColorFlow Conditioning",
            category=COLORFLOW_CATEGORY,
            description=("Patches the base MODEL with the ColorFlow colorizer (its LoRA and ColorGuider) and puts the "
                         "guider's input — the VAE latents of the retrieval canvas (for PixArt: the references around "
                         "the page and the page apart) and its mask — into the positive and negative, as the official "
                         "pipelines build them. Sample the latent it gives (the canvas size, any batch)."),
            inputs=[
                io.Model.Input("model", tooltip="PixArt-XL-2-1024-MS (sketch/, shading/) or SD1.5 (GraySD/)"),
                ColorFlow.Input("colorflow"),
                io.Vae.Input("vae", tooltip="the base's VAE (SD's KL-f8 VAE for both)"),
                io.Conditioning.Input("positive", tooltip='the official prompt is "manga"'),
                io.Conditioning.Input("negative", tooltip="the official negative is the empty prompt"),
                io.Image.Input("canvas", tooltip="Retrieve References' canvas (the page in the middle, 2x its size)"),
                io.Mask.Input("mask", tooltip="Retrieve References' mask (white on the page)"),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="the guider residuals' scale (official: 1)"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="the VAE posterior samples of the canvas (the official app draws them too)"),
            ],
            outputs=[io.Model.Output(display_name="model"), io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative"), io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, colorflow, vae, positive, negative, canvas, mask, strength=1.0, seed=0):
        canvas = convert.rgb(convert.check_image(canvas, "canvas"))
        if mask is None:
            raise ColorizerInputError("ColorFlow Conditioning needs the canvas's mask (Retrieve References gives "
                                      "both): white where the page is, black on the retrieved references")
        mask = convert.as_mask_batch(mask, "mask")[:, 0]
        return io.NodeOutput(*condition(model, colorflow, vae, positive, negative, canvas, mask, strength, seed))


class ColorFlowSampling(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionColorFlowSampling", display_name="ColorFlow Sampling",
            category=COLORFLOW_CATEGORY,
            description=("The official app's sampler and schedule for SamplerCustomAdvanced: PixArt — DPM++ 2M on "
                         "the linspace timesteps; SD1.5 — UniPC (bh2) on the leading timesteps; both start from "
                         "unit-variance noise as the app does. Guidance: 4.5 (PixArt), 7.5 (SD1.5), in a CFG Guider."),
            inputs=[ColorFlow.Input("colorflow"),
                    io.Int.Input("steps", default=10, min=1, max=100, tooltip="the app's Inference Steps (10)")],
            outputs=[io.Sampler.Output(display_name="sampler"), io.Sigmas.Output(display_name="sigmas")],
        )

    @classmethod
    def execute(cls, colorflow, steps=10):
        return io.NodeOutput(sampling.official_sampler(colorflow.spec),
                             sampling.official_sigmas(colorflow.spec, int(steps)))


class PageFromCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionColorFlowPage", display_name="ColorFlow Page From Canvas",
            category=COLORFLOW_CATEGORY,
            description="The coloured page: the middle of the decoded canvas (half of each side), as the app crops it.",
            inputs=[io.Image.Input("canvas")],
            outputs=[io.Image.Output(display_name="page")],
        )

    @classmethod
    def execute(cls, canvas):
        canvas = convert.check_image(canvas, "canvas")
        h, w = canvas.shape[1:3]
        top, left = (h - h // 2) // 2, (w - w // 2) // 2
        return io.NodeOutput(canvas[:, top:top + h // 2, left:left + w // 2].contiguous())


class LoadSuperResolution(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadColorFlowSuperResolution",
            display_name="ColorFlow Load Guided Super-Resolution", category=COLORFLOW_CATEGORY,
            description=(f"ColorFlow's guided super-resolution network ({SUPER_RESOLUTION_FILE} of a released "
                         "folder in models/colorflow)."),
            inputs=[io.Combo.Input("folder", options=_super_resolution_files(),
                                   tooltip=f"a folder of models/colorflow holding {SUPER_RESOLUTION_FILE}")],
            outputs=[ColorFlowSuperResolution.Output(display_name="super_resolution")],
        )

    @classmethod
    def execute(cls, folder):
        path = os.path.join(_folder(folder), SUPER_RESOLUTION_FILE)
        return io.NodeOutput(reloadable_unet_patcher(load_network, path))


class SuperResolution(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionColorFlowSuperResolution", display_name="ColorFlow Guided Super-Resolution",
            category=COLORFLOW_CATEGORY,
            description=("ColorFlow's guided super-resolution: the colours (resized to the page) and the original "
                         "page are encoded by the VAE; their encoder features, combined by the network, are added to "
                         "the decoder of the colour latent — sharp lines and lettering at the page's own size. Each "
                         "page on its own (the official network normalises with each picture's statistics)."),
            inputs=[
                ColorFlowSuperResolution.Input("super_resolution"),
                io.Vae.Input("vae", tooltip="the SD VAE the network was trained with"),
                io.Image.Input("colours", tooltip="the coloured page (ColorFlow Page From Canvas), any size"),
                io.Image.Input("page", tooltip="the original black-and-white page, at the output size"),
                io.Combo.Input("batchnorm", options=["picture statistics (official)", "running statistics"],
                               default="picture statistics (official)",
                               tooltip="the released app normalises with each picture's own statistics"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="the colour latent's posterior sample"),
            ],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, super_resolution, vae, colours, page, batchnorm="picture statistics (official)", seed=0):
        colours = convert.rgb(convert.check_image(colours, "colours"))
        page = convert.rgb(convert.check_image(page, "page"))
        return io.NodeOutput(super_resolve_pages(super_resolution, vae, colours, page,
                                                 batch_statistics=batchnorm.startswith("picture"), seed=seed))


class LoadDiffusersModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadDiffusersBase", display_name="Load Diffusers Base (ColorFlow)",
            category=COLORFLOW_CATEGORY,
            description=("A base model from a diffusers-layout folder in models/diffusers — what ColorFlow's app "
                         "downloads (PixArt-alpha/PixArt-XL-2-1024-MS, stable-diffusion-v1-5) — of any size its "
                         "config.json describes: the transformer/ or unet/, the T5 text_encoder/ (PixArt) and the "
                         "vae/. Single-file bases work through ComfyUI's own loaders instead."),
            inputs=[io.Combo.Input("folder", options=subfolders(
                "diffusers", lambda p: any(os.path.isdir(os.path.join(p, s)) for s in ("transformer", "unet"))))],
            outputs=[io.Model.Output(display_name="model"), io.Clip.Output(display_name="clip"),
                     io.Vae.Output(display_name="vae")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, folder):
        root = subfolder_path("diffusers", folder)
        if root is None or not any(os.path.isdir(os.path.join(root, s)) for s in ("transformer", "unet")):
            raise ColorizerLoadError(f"{folder} is not a diffusers base folder of models/diffusers (transformer/ or "
                                     "unet/)")
        sub = next(s for s in ("transformer", "unet") if os.path.isdir(os.path.join(root, s)))
        model = diffusers_bases.load_model_folder(os.path.join(root, sub))
        parts = []
        parts_of = (("text_encoder", diffusers_bases.load_t5_folder), ("vae", diffusers_bases.load_vae_folder))
        for slot, (name, load) in enumerate(parts_of, start=1):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                parts.append(load(path))
            elif cls.hidden is not None and output_used(cls.hidden.prompt, cls.hidden.unique_id, slot):
                raise ColorizerLoadError(f"{folder}/ has no {name}/, but this node's {('clip', 'vae')[slot - 1]} "
                                         "output is connected")
            else:
                parts.append(None)
        return io.NodeOutput(model, *parts)


NODES = [LoadColorFlow, ColorFlowConditioning, ColorFlowSampling, PageFromCanvas, LoadSuperResolution,
         SuperResolution, LoadDiffusersModel]

"""The ColorFlow example workflows (a chapter: pool -> retrieval -> ColorFlow colorizer -> guided super-resolution
-> pages), built on the same Graph as the ColorizeDiffusion ones (devtools/workflows.py calls `build_colorflow` for
the ColorFlow families).

Shipped: ComfyUI's own loaders with the files ComfyUI users hold (the PixArt transformer and T5-XXL, an SD1.5
checkpoint, the SD VAE). Tests: `Options.colorflow_base` names a diffusers folder of models/diffusers (the golden
set's tiny bases) loaded by Load Diffusers Base instead; `Options.colorflow_text` another folder whose text encoder
encodes the prompt (the tiny SD1.5 base has none).
"""
from __future__ import annotations

from dataclasses import replace

from ..model_patches.colorize_diffusion.modes import official_mode
from .pictures import folder_node

COLORFLOW_FAMILIES = ("pixart", "sd15")
# per workflow: the released colorizer folder and the app's Input Style (the Decolorize step) that goes with it
COLORIZERS = {"chapter_colorflow": ("sketch", "Sketch"), "shaded_pages_colorflow": ("shading", "Sketch_Shading"),
              "grey_pages_colorflow": ("GraySD", "GrayImage(ScreenStyle)")}
SNAPSHOT = "."                                              # the snapshot's LE/ and ScreenStyle/ in models/colorflow/
GUIDANCE = {"pixart": 4.5, "sd15": 7.5}
PIXART_TRANSFORMER = "PixArt-XL-2-1024-MS.safetensors"
T5_XXL = "t5xxl_fp16.safetensors"
SD15_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
SD_VAE = "sd-vae-ft-ema.safetensors"
IMAGE_ENCODER = "colorflow_image_encoder.safetensors"       # ColorFlow's image_encoder/model.safetensors
STEPS = 10                                                  # the app's Inference Steps
_HF = "https://huggingface.co"
MODEL_FILES = {
    PIXART_TRANSFORMER: (f"{_HF}/PixArt-alpha/PixArt-XL-2-1024-MS/resolve/main/transformer/"
                         "diffusion_pytorch_model.safetensors", "diffusion_models"),
    T5_XXL: (f"{_HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    SD15_CHECKPOINT: (f"{_HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
                      "v1-5-pruned-emaonly-fp16.safetensors", "checkpoints"),
    SD_VAE: (f"{_HF}/stabilityai/sd-vae-ft-ema/resolve/main/diffusion_pytorch_model.safetensors", "vae"),
    IMAGE_ENCODER: (f"{_HF}/TencentARC/ColorFlow/resolve/main/image_encoder/model.safetensors", "clip_vision"),
}
# files saved under another name than their repository's
REPOSITORY_NAMES = {PIXART_TRANSFORMER: "diffusion_pytorch_model.safetensors",
                    SD_VAE: "diffusion_pytorch_model.safetensors", IMAGE_ENCODER: "model.safetensors"}
MODEL_WIDGETS = {("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"), ("CheckpointLoaderSimple", "ckpt_name"),
                 ("VAELoader", "vae_name")}


def build_colorflow(stem: str, spec, o, graph_class, colors: dict):
    """The graph of a ColorFlow workflow. `graph_class`, `colors`: devtools.workflows' Graph and node colours."""
    from . import workflows as wf      # here, not at the top: devtools.workflows imports this module

    family = spec.family
    defaults = wf.Options()
    if o.steps == defaults.steps:
        o = replace(o, steps=STEPS)
    if o.clip_vision == defaults.clip_vision:
        o = replace(o, clip_vision=IMAGE_ENCODER)
    g = graph_class(stem, spec, o, official_mode("vanilla", "v2"))
    green, blue, purple = colors["inputs"], colors["models"], colors["encoders"]

    pages = folder_node(g, o.sketch_folder, "Pages", green)

    # models ----------------------------------------------------------------------------------------------
    if o.colorflow_base:
        base = g.add("ColorizeDiffusionLoadDiffusersBase", 1, {"folder": o.colorflow_base}, color=blue)
        model, clip, vae = (base, 0), (base, 1), (base, 2)
        if o.colorflow_text:
            text = g.add("ColorizeDiffusionLoadDiffusersBase", 1, {"folder": o.colorflow_text}, title="Text encoder",
                         color=blue)
            clip, vae = (text, 1), (text, 2)
    elif family == "pixart":
        model = (g.add("UNETLoader", 1, {"unet_name": PIXART_TRANSFORMER, "weight_dtype": "default"}, color=blue), 0)
        clip = (g.add("CLIPLoader", 1, {"clip_name": T5_XXL, "type": "pixart", "device": "default"}, color=blue), 0)
        vae = (g.add("VAELoader", 1, {"vae_name": SD_VAE}, color=blue), 0)
    else:
        ckpt = g.add("CheckpointLoaderSimple", 1, {"ckpt_name": SD15_CHECKPOINT}, color=blue)
        model, clip, vae = (ckpt, 0), (ckpt, 1), (ckpt, 2)
    encoder = g.add("ColorizeDiffusionLoadOpenCLIPVision", 1,
                    {"clip_name": o.clip_vision, "heads": o.clip_heads, "activation": "gelu", "dtype": "fp32"},
                    title="Retrieval image encoder", color=blue)
    folder, style = COLORIZERS[stem]
    colorizer = g.add("ColorizeDiffusionLoadColorFlow", 1, {"colorizer": folder}, color=blue)
    sr = g.add("ColorizeDiffusionLoadColorFlowSuperResolution", 1, {"folder": folder}, color=blue)

    # retrieval and prompt --------------------------------------------------------------------------------
    decolorized = g.add("ColorizeDiffusionColorFlowDecolorize", 1,
                        {"style": style, "folder": SNAPSHOT, "resolution": o.pool_resolution,
                         "seed": o.seed}, {"page": (pages, 0)}, title="Decolorize", color=green)
    pool = g.add("ColorizeDiffusionReferencePool", 2, {"resolution": o.pool_resolution, "folder": o.pool_folder},
                 {"clip_vision": (encoder, 0)})
    retrieved = g.add("ColorizeDiffusionRetrieveReferences", 2, {"top_k": 3},
                      {"pool": (pool, 0), "clip_vision": (encoder, 0), "page": (decolorized, 0)})
    positive = g.add("CLIPTextEncode", 2, {"text": "manga"}, {"clip": clip}, title="Prompt")
    negative = g.add("CLIPTextEncode", 2, {"text": ""}, {"clip": clip}, title="Negative prompt")

    # the colorizer ---------------------------------------------------------------------------------------
    cond = g.add("ColorizeDiffusionColorFlowConditioning", 3, {"strength": 1.0, "seed": o.seed},
                 {"model": model, "colorflow": (colorizer, 0), "vae": vae, "positive": (positive, 0),
                  "negative": (negative, 0), "canvas": (retrieved, 0), "mask": (retrieved, 1)}, color=purple)
    sampling = g.add("ColorizeDiffusionColorFlowSampling", 4, {"steps": o.steps}, {"colorflow": (colorizer, 0)})
    guider = g.add("CFGGuider", 4, {"cfg": GUIDANCE[family]}, {"model": (cond, 0), "positive": (cond, 1),
                                                                "negative": (cond, 2)})
    noise = g.add("RandomNoise", 4, {"noise_seed": o.seed})
    samples = g.add("SamplerCustomAdvanced", 4, {}, {"noise": (noise, 0), "guider": (guider, 0),
                                                     "sampler": (sampling, 0), "sigmas": (sampling, 1),
                                                     "latent_image": (cond, 3)})

    # the page --------------------------------------------------------------------------------------------
    decoded = g.add("VAEDecode", 5, {}, {"samples": (samples, 0), "vae": vae})
    page = g.add("ColorizeDiffusionColorFlowPage", 5, {}, {"canvas": (decoded, 0)})
    image = g.add("ColorizeDiffusionColorFlowSuperResolution", 5,
                  {"batchnorm": "picture statistics (official)", "seed": o.seed},
                  {"super_resolution": (sr, 0), "vae": vae, "colours": (page, 0), "page": (decolorized, 1)})
    g.add("SaveImage", 5, {"filename_prefix": o.filename_prefix or f"ColorFlow/{stem}"}, {"images": (image, 0)})
    g.note = _note(g, family, folder, o)
    return g


def _note(g, family: str, folder: str, o) -> str:
    if family == "pixart":
        files = [f"- {PIXART_TRANSFORMER} (the PixArt-XL-2-1024-MS transformer): models/diffusion_models/",
                 f"- {T5_XXL}: models/text_encoders/", f"- {SD_VAE}: models/vae/"]
    else:
        files = [f"- {SD15_CHECKPOINT}: models/checkpoints/"]
    files += [f"- {IMAGE_ENCODER} (ColorFlow's image_encoder/model.safetensors): models/clip_vision/",
              f"- the {folder}/ folder of TencentARC/ColorFlow (config.json, weights, LoRA, MultiResNetModel.bin): "
              f"models/colorflow/{folder}/",
              "- the LE/ and ScreenStyle/ folders of TencentARC/ColorFlow (Decolorize's networks): models/colorflow/"]
    return "\n".join([
        g.spec.title, "", g.spec.description, "",
        "Model files (Run offers the downloads of the single files when they are missing):", *files, "",
        f"Pictures: the pages in {o.sketch_folder}/, the reference pool in {o.pool_folder}/ (the pack's examples, "
        "read in place); for yours, Load Image Dataset from Folder and a folder of input/ in Reference Pool.",
        f"ColorFlow's app: prompt \"manga\", guidance {GUIDANCE[family]}, {STEPS} steps, seed 0; Reference Pool's "
        "resolution is the app's (640x640, 512x800, 800x512) or any other listed size.",
    ])

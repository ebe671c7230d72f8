"""CLIP vision towers as ComfyUI CLIP_VISION values, built from any weight file's shapes.

Two back ends, which give the same tokens (model_patches/common/clip_tokens.py):

(a) ComfyUI's ``CLIP_VISION`` object (``comfy.clip_vision.ClipVisionModel``, e.g. ``clip_vision_h.safetensors``):
    its vision model is run on *our* preprocessed pixels (never its ``clip_preprocess``), the final
    hidden state (``last_hidden_state``; in ComfyUI 0.3.75 taken *before* ``post_layernorm``) gets
    ``post_layernorm`` + ``visual_projection`` on all tokens. Whether the host already applied
    ``post_layernorm`` is detected (structurally and against the pooled output), so it is never applied twice.
    ComfyUI keeps this model's weights in its text-encoder dtype (fp16 by default, even on CPU); the maths
    runs in fp32 (``manual_cast`` layers cast the weights to the input dtype), so the only difference to the
    fp32 official encoder is the fp16 rounding of the weights (relative RMS ~1e-3).
(b) :class:`OpenCLIPVision`: an OpenCLIP vision checkpoint (``visual.*`` key names) built locally with
    ``open_clip``'s ``VisionTransformer`` from hyper-parameters inferred from tensor shapes (nothing is
    downloaded, no ``pretrained=`` name is ever used). It also offers ComfyUI's ``encode_image`` API, so it
    can travel on a ``CLIP_VISION`` socket.

``comfy.clip_vision.load`` only recognises ViT-L/H/G (and SigLIP/DINOv2) layer counts; any other tower (like
the tiny golden one) comes back as ``None`` there, so back end (b) is the path for non-standard towers.
:func:`build_comfy_clip_vision` is the one path to a real ComfyUI ``ClipVisionModel`` of any size, for an OpenCLIP
or a transformers-layout tower, from a config read from the shapes (the fallback when ``open_clip`` is not
installed, and the tests' way to exercise back end (a)); :func:`load_vision_file` picks the back end of a file.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile

import torch

from ...comfy_compat import cast_model, clip_preprocess, image_sizes, new_model_patcher
from ...errors import ColorizerLoadError
from ...weight_files import load_strict, read_state_dict

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_IMAGE_SIZE = 224

# Heads of the OpenCLIP/OpenAI ViT towers by width (head count is not visible in tensor shapes).
KNOWN_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16}

_RESBLOCK_RE = re.compile(r"transformer\.resblocks\.(\d+)\.")


# --------------------------------------------------------------------------------------------
# OpenCLIP state dicts
# --------------------------------------------------------------------------------------------

def find_openclip_vision_prefix(sd: dict) -> str | None:
    """The prefix of an OpenCLIP ViT vision tower in ``sd`` (``"visual."``, ``"model.visual."``, ``""`` ...), or None."""
    for k in sd:
        if k.endswith("conv1.weight"):
            p = k[: -len("conv1.weight")]
            if (p + "class_embedding") in sd and (p + "transformer.resblocks.0.attn.in_proj_weight") in sd:
                return p
    return None


def infer_openclip_vision_config(sd: dict, prefix: str = "visual.", *, heads: int | None = None,
                                 quick_gelu: bool = False) -> dict:
    """Hyper-parameters of an OpenCLIP ViT tower from tensor shapes under ``prefix``.

    Returns ``{width, layers, heads, patch_size, image_size, mlp_ratio, output_dim, ls_init_value, no_ln_pre,
    quick_gelu, has_proj}``. The head count is not visible in shapes: ``heads`` wins when given, else the known
    OpenCLIP towers' value for the width, else ``width // 64``; a width that does not divide by 64 needs it.
    """
    def get(name):
        t = sd.get(prefix + name)
        if t is None:
            raise ColorizerLoadError(f"not an OpenCLIP ViT vision tower: key {prefix + name} is missing")
        return t

    conv = get("conv1.weight")
    if conv.ndim != 4 or conv.shape[1] != 3 or conv.shape[2] != conv.shape[3]:
        raise ColorizerLoadError(f"{prefix}conv1.weight: expected [width,3,p,p], found {tuple(conv.shape)}")
    width, patch = int(conv.shape[0]), int(conv.shape[2])
    pos = get("positional_embedding")
    n_pos = int(pos.shape[0])
    grid = int(round((n_pos - 1) ** 0.5))
    if pos.ndim != 2 or grid * grid + 1 != n_pos or pos.shape[1] != width:
        raise ColorizerLoadError(f"{prefix}positional_embedding: expected [grid*grid+1, {width}], found {tuple(pos.shape)}")
    if any(k.startswith(prefix + "attn_pool") for k in sd):
        raise ColorizerLoadError("OpenCLIP towers with attentional pooling (CoCa) are not supported")
    layers = 1 + max((int(m.group(1)) for k in sd if k.startswith(prefix)
                      for m in [_RESBLOCK_RE.match(k[len(prefix):])] if m), default=-1)
    if layers <= 0:
        raise ColorizerLoadError(f"no {prefix}transformer.resblocks.* found")
    mlp = int(get("transformer.resblocks.0.mlp.c_fc.weight").shape[0])
    proj = sd.get(prefix + "proj")
    if proj is not None and (proj.ndim != 2 or proj.shape[0] != width):
        raise ColorizerLoadError(f"{prefix}proj: expected [{width}, out], found {tuple(proj.shape)}")
    if heads is None or heads <= 0:
        heads = KNOWN_HEADS_BY_WIDTH.get(width) or (width // 64 if width % 64 == 0 else None)
        if heads is None:
            raise ColorizerLoadError(
                f"cannot infer the attention head count of a width-{width} CLIP tower from its weights; "
                f"give it explicitly (heads input / sidecar JSON)")
    if width % heads:
        raise ColorizerLoadError(f"CLIP width {width} is not divisible by {heads} heads")
    return {
        "width": width,
        "layers": layers,
        "heads": int(heads),
        "patch_size": patch,
        "image_size": grid * patch,
        "mlp_ratio": mlp / width,
        "output_dim": int(proj.shape[1]) if proj is not None else width,
        "has_proj": proj is not None,
        "ls_init_value": 1e-5 if (prefix + "transformer.resblocks.0.ls_1.gamma") in sd else None,
        "no_ln_pre": (prefix + "ln_pre.weight") not in sd,
        "quick_gelu": bool(quick_gelu),
    }


def read_sidecar_config(path: str) -> dict:
    """Optional ``<file stem>.json`` next to a vision file: an open_clip model config
    (``{"embed_dim", "vision_cfg": {...}, "quick_gelu"}``) or the golden form ``{"open_clip_model_cfg": {...}}``.
    Returns ``{"heads": int, "quick_gelu": bool, "text_heads": int}`` (keys only when present)."""
    side = os.path.splitext(path)[0] + ".json"
    if not os.path.isfile(side):
        side = os.path.join(os.path.dirname(path), "config.json")      # a transformers model folder
        if not os.path.isfile(side):
            return {}
    try:
        with open(side, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        log.warning("ColorizeDiffusion: ignoring unreadable sidecar %s (%s)", side, exc)
        return {}
    out = {}
    hf = cfg.get("config", cfg) if isinstance(cfg, dict) else None
    hf = hf.get("vision_config", hf) if isinstance(hf, dict) else None
    if isinstance(hf, dict) and "num_attention_heads" in hf:      # transformers CLIPVisionConfig form
        out["heads"] = int(hf["num_attention_heads"])
    cfg = cfg.get("open_clip_model_cfg", cfg)
    vc = cfg.get("vision_cfg", {}) if isinstance(cfg, dict) else {}
    if "heads" in vc:
        out["heads"] = int(vc["heads"])
    elif "width" in vc and "head_width" in vc:
        out["heads"] = int(vc["width"]) // int(vc["head_width"])
    elif "width" in vc:
        out["heads"] = int(vc["width"]) // 64      # open_clip's CLIPVisionCfg default head_width
    if "quick_gelu" in cfg:
        out["quick_gelu"] = bool(cfg["quick_gelu"])
    tc = cfg.get("text_cfg", {}) if isinstance(cfg, dict) else {}
    if "heads" in tc:
        out["text_heads"] = int(tc["heads"])
    return out


# --------------------------------------------------------------------------------------------
# back end (b): OpenCLIP VisionTransformer
# --------------------------------------------------------------------------------------------

class _Output:
    """Same access pattern as ``comfy.clip_vision.Output`` (attribute and item access)."""

    def __getitem__(self, key):
        return getattr(self, key)

    def __setitem__(self, key, item):
        setattr(self, key, item)

    def __contains__(self, key):
        return hasattr(self, key)


class OpenCLIPVision:
    """An OpenCLIP ViT vision tower (``open_clip.transformer.VisionTransformer``) under a ComfyUI ``ModelPatcher``.

    Attributes mirror ``comfy.clip_vision.ClipVisionModel`` where they mean the same thing: ``model``,
    ``patcher``, ``load_device``, ``dtype``, ``image_size``, ``image_mean``, ``image_std``; ``config`` holds the
    inferred hyper-parameters. ``encode_image`` has ComfyUI's signature and output fields so the object works
    on a ``CLIP_VISION`` socket (e.g. core ``CLIPVisionEncode``); ColorizeDiffusion itself uses
    :meth:`encode_tokens`.
    """

    def __init__(self, sd: dict, prefix: str = "visual.", *, heads: int | None = None, quick_gelu: bool = False,
                 dtype: torch.dtype = torch.float32, load_device=None, offload_device=None):
        try:
            from open_clip.transformer import VisionTransformer, QuickGELU
        except ImportError as exc:  # pragma: no cover - requirements.txt lists open_clip_torch
            raise ColorizerLoadError("open_clip_torch is not installed (pip install open_clip_torch)") from exc
        import comfy.model_management as mm

        cfg = infer_openclip_vision_config(sd, prefix, heads=heads, quick_gelu=quick_gelu)
        self.config = cfg
        kwargs = dict(image_size=cfg["image_size"], patch_size=cfg["patch_size"], width=cfg["width"],
                      layers=cfg["layers"], heads=cfg["heads"], mlp_ratio=cfg["mlp_ratio"],
                      ls_init_value=cfg["ls_init_value"], output_dim=cfg["output_dim"],
                      act_layer=QuickGELU if cfg["quick_gelu"] else torch.nn.GELU)
        if cfg["no_ln_pre"]:
            kwargs["no_ln_pre"] = True
        with torch.device("meta"):
            model = VisionTransformer(**kwargs)
        vsd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not cfg["has_proj"]:
            vsd["proj"] = torch.eye(cfg["width"], dtype=torch.float32)
        load_strict(model, vsd, key_prefix=prefix, what=f"OpenCLIP vision tower {cfg}", dtype=dtype)
        model.eval().requires_grad_(False)
        self.model = model
        self.dtype = dtype
        self.image_size = cfg["image_size"]
        self.image_mean = list(CLIP_MEAN)
        self.image_std = list(CLIP_STD)
        self.load_device = load_device if load_device is not None else mm.text_encoder_device()
        offload = offload_device if offload_device is not None else mm.text_encoder_offload_device()
        self.patcher = new_model_patcher(model, self.load_device, offload)

    @property
    def out_dim(self) -> int:
        return self.config["output_dim"]

    def _load(self):
        """Put the tower on its load device. Full load only: plain torch modules (and the root / attention
        parameters) are not handled by ComfyUI's partial low-VRAM loading, which only casts ``comfy.ops`` layers."""
        import comfy.model_management as mm

        mm.load_models_gpu([self.patcher], force_full_load=True)

    def _hidden(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final and penultimate block outputs ``[B,N,width]`` (before ``ln_post``) for normalised pixels."""
        m = self.model
        x = m.conv1(pixels.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = m.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + m.positional_embedding.to(x.dtype)
        x = m.ln_pre(x)
        batch_first = getattr(m.transformer, "batch_first", None)
        if batch_first is None:            # open_clip < 2.23: the Transformer takes LND
            x = x.permute(1, 0, 2)
        penult = x
        for blk in m.transformer.resblocks:
            penult = x
            x = blk(x)
        if batch_first is None:
            x, penult = x.permute(1, 0, 2), penult.permute(1, 0, 2)
        return x, penult

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.ln_post(hidden) @ self.model.proj

    def encode_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[B,3,S,S]`` -> all projected tokens ``[B,1+grid², C]`` float32 on the intermediate device."""
        import comfy.model_management as mm

        self._load()
        with torch.no_grad():
            hidden, _ = self._hidden(pixels.to(self.load_device))
            full = self._project(hidden)
        return full.to(device=mm.intermediate_device(), dtype=torch.float32)

    def encode_image(self, image: torch.Tensor, crop: bool = True):
        """ComfyUI-compatible ``encode_image`` (uses ComfyUI's ``clip_preprocess``, as core nodes expect)."""
        import comfy.model_management as mm

        self._load()
        px = clip_preprocess(image.to(self.load_device), size=self.image_size, mean=self.image_mean,
                             std=self.image_std, crop=crop).float()
        dev = mm.intermediate_device()
        with torch.no_grad():
            hidden, penult = self._hidden(px)
            embeds = self._project(hidden[:, 0])
        out = _Output()
        out["last_hidden_state"] = hidden.to(dev, torch.float32)
        out["penultimate_hidden_states"] = penult.to(dev, torch.float32)
        out["image_embeds"] = embeds.to(dev, torch.float32)
        out["mm_projected"] = None
        out["image_sizes"] = image_sizes(px)
        return out

    def get_sd(self):
        return {"visual." + k: v for k, v in self.model.state_dict().items()}


def load_openclip_vision(path_or_sd, *, heads: int | None = None, quick_gelu: bool | None = None,
                         dtype: torch.dtype = torch.float32) -> OpenCLIPVision:
    """Back end (b) from a file path or a state dict (OpenCLIP key names; only the vision tower is used).

    Head count / activation: explicit arguments, else a ``<stem>.json`` sidecar, else inferred
    (:func:`infer_openclip_vision_config`); activation defaults to exact GELU (OpenCLIP ViT-H).
    """
    side = {}
    if isinstance(path_or_sd, (str, os.PathLike)):
        path = os.fspath(path_or_sd)
        sd = read_state_dict(path, "CLIP vision file")
        side = read_sidecar_config(path)
    else:
        sd = path_or_sd
    prefix = find_openclip_vision_prefix(sd)
    if prefix is None:
        raise ColorizerLoadError("no OpenCLIP ViT vision tower (keys like 'visual.conv1.weight', "
                                 "'visual.transformer.resblocks.0.attn.in_proj_weight') in this file")
    if heads is None or heads <= 0:
        heads = side.get("heads")
    if quick_gelu is None:
        quick_gelu = side.get("quick_gelu", False)
    return OpenCLIPVision(sd, prefix, heads=heads, quick_gelu=quick_gelu, dtype=dtype)


# --------------------------------------------------------------------------------------------
# back end (a): ComfyUI CLIP_VISION, one builder for both layouts
# --------------------------------------------------------------------------------------------

def comfy_vision_config_for_openclip(sd: dict, prefix: str = "visual.", *, heads: int | None = None,
                                     quick_gelu: bool = False) -> dict:
    """A ComfyUI/HF ``clip_vision_model`` config dict for an OpenCLIP tower (shapes + head count)."""
    c = infer_openclip_vision_config(sd, prefix, heads=heads, quick_gelu=quick_gelu)
    if c["ls_init_value"] is not None or c["no_ln_pre"]:
        raise ColorizerLoadError("ComfyUI's CLIP vision model has no layer scale / missing ln_pre; use the OpenCLIP loader")
    cfg = {
        "hidden_act": "quick_gelu" if c["quick_gelu"] else "gelu",
        "hidden_size": c["width"], "image_size": c["image_size"],
        "intermediate_size": int(round(c["mlp_ratio"] * c["width"])), "layer_norm_eps": 1e-5,
        "model_type": "clip_vision_model", "num_attention_heads": c["heads"], "num_channels": 3,
        "num_hidden_layers": c["layers"], "patch_size": c["patch_size"],
        "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
    }
    if c["has_proj"]:
        cfg["projection_dim"] = c["output_dim"]
    return cfg


def find_hf_vision_prefix(sd: dict) -> str | None:
    """The prefix of a transformers-layout CLIP vision tower (ComfyUI's clip_vision_*.safetensors naming)."""
    for k in sd:
        if k.endswith("vision_model.embeddings.patch_embedding.weight"):
            return k[: -len("vision_model.embeddings.patch_embedding.weight")]
    return None


def hf_vision_config(sd: dict, prefix: str = "", *, heads: int | None = None) -> dict:
    """ComfyUI's clip_vision_model config for a transformers-layout tower, from its shapes (heads: given, the
    sidecar's, the known towers' by width, else width/64)."""
    p = prefix + "vision_model."
    width, _, patch, _ = sd[p + "embeddings.patch_embedding.weight"].shape
    positions = int(sd[p + "embeddings.position_embedding.weight"].shape[0])
    layers = 1 + max(int(k[len(p + "encoder.layers."):].split(".")[0]) for k in sd
                     if k.startswith(p + "encoder.layers."))
    if heads is None and int(width) not in KNOWN_HEADS_BY_WIDTH:
        raise ColorizerLoadError(f"cannot infer the attention head count of a width-{int(width)} CLIP tower from its "
                                 "weights; give it explicitly (heads input / sidecar JSON)")
    cfg = {"hidden_act": "gelu", "hidden_size": int(width), "image_size": int(round((positions - 1) ** 0.5)) * int(patch),
           "intermediate_size": int(sd[p + "encoder.layers.0.mlp.fc1.weight"].shape[0]), "layer_norm_eps": 1e-5,
           "model_type": "clip_vision_model", "num_attention_heads": int(heads or KNOWN_HEADS_BY_WIDTH[int(width)]),
           "num_channels": 3, "num_hidden_layers": layers, "patch_size": int(patch),
           "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    if prefix + "visual_projection.weight" in sd:
        cfg["projection_dim"] = int(sd[prefix + "visual_projection.weight"].shape[0])
    return cfg


def build_comfy_clip_vision(sd: dict, *, heads: int | None = None, quick_gelu: bool = False, dtype=None):
    """A genuine ``comfy.clip_vision.ClipVisionModel`` for a CLIP ViT tower of either layout (OpenCLIP ``visual.*``
    or transformers ``vision_model.*``) of any size: ``comfy.clip_vision.load`` only knows the ViT-L/H/G layer
    counts, so the config comes from the shapes. ``dtype`` None = the host's text-encoder dtype (as ComfyUI loads
    it); otherwise the model is cast to ``dtype`` before the weights are loaded. ``quick_gelu`` applies to the
    OpenCLIP layout (a transformers config says its activation)."""
    import comfy.clip_vision

    prefix = find_openclip_vision_prefix(sd)
    if prefix is not None:
        cfg = comfy_vision_config_for_openclip(sd, prefix, heads=heads, quick_gelu=quick_gelu)
        hf = comfy.clip_vision.convert_to_transformers({k: v for k, v in sd.items() if k.startswith(prefix)}, prefix)
    else:
        prefix = find_hf_vision_prefix(sd)
        if prefix is None:
            raise ColorizerLoadError("no CLIP vision tower in this state dict (neither OpenCLIP visual.* nor "
                                     "transformers vision_model.* keys)")
        cfg = hf_vision_config(sd, prefix, heads=heads)
        hf = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    fd, cfg_path = tempfile.mkstemp(suffix=".json", prefix="colorize_clip_vision_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        cv = comfy.clip_vision.ClipVisionModel(cfg_path)   # 0.3.75 takes a path; newest also a dict
    finally:
        os.unlink(cfg_path)
    if dtype is not None:                 # before loading, so fp32 weights are not rounded through fp16
        cv.model.to(dtype=dtype)
        cv.dtype = dtype
    missing, unexpected = cv.load_sd(hf)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ColorizerLoadError(f"ComfyUI CLIP vision model: missing {list(missing)[:8]}, unexpected {list(unexpected)[:8]}")
    if dtype is not None:                 # a host with lazy layers assigns the file's tensors as they are
        cast_model(cv.model, dtype)
    return cv


def load_vision_file(path: str, *, heads: int | None = None, quick_gelu: bool = False, dtype=torch.float32):
    """A weight file as a CLIP_VISION value. OpenCLIP layout: :class:`OpenCLIPVision` (ComfyUI's model when
    open_clip is not installed, in the host's text-encoder dtype); transformers layout: ComfyUI's model in ``dtype``
    (the official apps run CLIP in fp32), whatever its size; anything else: ``comfy.clip_vision.load``. The head
    count and activation: the arguments, else a sidecar JSON next to the file (:func:`read_sidecar_config`)."""
    import comfy.clip_vision

    sd = read_state_dict(path, "CLIP vision file")
    side = read_sidecar_config(path)
    heads = heads if heads and heads > 0 else side.get("heads")
    if find_openclip_vision_prefix(sd) is not None:
        quick = quick_gelu or bool(side.get("quick_gelu", False))
        try:
            return load_openclip_vision(sd, heads=heads, quick_gelu=quick, dtype=dtype)
        except ColorizerLoadError as exc:
            if "open_clip_torch is not installed" not in str(exc):
                raise
            return build_comfy_clip_vision(sd, heads=heads, quick_gelu=quick)
    if find_hf_vision_prefix(sd) is not None:
        return build_comfy_clip_vision(sd, heads=heads, dtype=dtype)
    del sd
    cv = comfy.clip_vision.load(path)
    if cv is None:
        raise ColorizerLoadError(f"{path} is neither an OpenCLIP vision tower nor a CLIP vision file ComfyUI knows")
    return cv

"""Reference tokens: both CLIP back ends, the nodes, batching, uncond, dim checks, squash preprocessing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from conftest import GOLDEN
from golden_support.compare import check_model_case
from golden_support import clip_runner

from colorize_diffusion.model_patches.colorize_diffusion import reference
from colorize_diffusion.model_patches.common import clip_tokens, clip_vision
from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError

from colorize_diffusion.nodes.preprocess_nodes import ReferencePad
from colorize_diffusion.nodes.reference_nodes import EncodeReference, LoadOpenCLIPVision

CLIP_FILE = GOLDEN / "clip" / "tiny-vit-openclip.safetensors"
A1_CASES = sorted((GOLDEN / "cases").glob("A1_*"))
HEADS = 4   # tiny-vit.json: width 96, head_width 24


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.pow(2).mean().sqrt()).item()


@pytest.fixture(scope="module")
def tiny_sd():
    return load_file(str(CLIP_FILE))


@pytest.fixture(scope="module")
def openclip_cv(tiny_sd):
    return clip_vision.load_openclip_vision(dict(tiny_sd), heads=HEADS)


@pytest.fixture(scope="module")
def comfy_cv_fp32(tiny_sd):
    return clip_vision.build_comfy_clip_vision(dict(tiny_sd), heads=HEADS, dtype=torch.float32)


@pytest.fixture(scope="module")
def comfy_cv_host_dtype(tiny_sd):
    return clip_vision.build_comfy_clip_vision(dict(tiny_sd), heads=HEADS)   # ComfyUI's text-encoder dtype


def load_case(case_dir: Path):
    case = json.loads((case_dir / "case.json").read_text())
    return case, load_file(str(case_dir / "inputs.safetensors")), load_file(str(case_dir / "expected.safetensors"))


def pm1_images(seed: int, b: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u8 = torch.randint(0, 256, (b, 3, h, w), generator=g).float()
    return u8 / 255 * 2 - 1


# ------------------------------------------------------------------ loading

def test_comfy_loader_does_not_know_the_tiny_tower():
    """Finding: comfy.clip_vision.load picks configs by layer count (ViT-L/H/G), so non-standard towers fail
    there; the golden runner and users go through back end (b) for them."""
    import comfy.clip_vision

    assert comfy.clip_vision.load(str(CLIP_FILE)) is None
    cv, how = clip_runner.load_clip_vision(CLIP_FILE)
    assert how == "open_clip" and isinstance(cv, clip_vision.OpenCLIPVision)


def test_inferred_config(tiny_sd):
    cfg = clip_vision.infer_openclip_vision_config(tiny_sd, "visual.", heads=HEADS)
    assert cfg == {"width": 96, "layers": 3, "heads": 4, "patch_size": 14, "image_size": 224, "mlp_ratio": 4.0,
                   "output_dim": 128, "has_proj": True, "ls_init_value": None, "no_ln_pre": False,
                   "quick_gelu": False}
    with pytest.raises(ColorizerLoadError, match="head count"):
        clip_vision.infer_openclip_vision_config(tiny_sd, "visual.")       # 96 is no known width, not /64
    # the heads of the real towers follow from their width
    meta = {k: torch.empty(v.shape, device="meta") for k, v in tiny_sd.items()}
    meta["visual.conv1.weight"] = torch.empty(1280, 3, 14, 14, device="meta")
    meta["visual.positional_embedding"] = torch.empty(257, 1280, device="meta")
    meta["visual.proj"] = torch.empty(1280, 1024, device="meta")
    meta["visual.transformer.resblocks.0.mlp.c_fc.weight"] = torch.empty(5120, 1280, device="meta")
    h = clip_vision.infer_openclip_vision_config(meta, "visual.")
    assert (h["heads"], h["output_dim"], h["mlp_ratio"]) == (16, 1024, 4.0)


def test_prefix_detection(tiny_sd):
    assert clip_vision.find_openclip_vision_prefix(tiny_sd) == "visual."
    bare = {k[len("visual."):]: v for k, v in tiny_sd.items()}
    assert clip_vision.find_openclip_vision_prefix(bare) == ""
    assert clip_vision.find_openclip_vision_prefix({"vision_model.post_layernorm.weight": torch.ones(2)}) is None


# ------------------------------------------------------------------ parity with the golden cases, both back ends

@pytest.mark.parametrize("case_dir", A1_CASES, ids=[p.name for p in A1_CASES])
@pytest.mark.parametrize("backend", ["open_clip", "comfy_fp32"])
def test_golden_tokens_both_backends(case_dir, backend, openclip_cv, comfy_cv_fp32):
    case, inputs, expected = load_case(case_dir)
    cv = openclip_cv if backend == "open_clip" else comfy_cv_fp32
    (ref,) = EncodeReference.execute(cv, inputs["image_hwc01"])
    got = {"full": ref.full, "tokens": ref.tokens, "local": ref.local,
           "preprocessed_224": clip_tokens.preprocess(ref.image)}
    report = check_model_case(case, got, expected)
    assert max(report.values()) < 2e-5


@pytest.mark.parametrize("case_dir", A1_CASES, ids=[p.name for p in A1_CASES])
def test_backends_agree(case_dir, openclip_cv, comfy_cv_fp32, comfy_cv_host_dtype):
    _, inputs, _ = load_case(case_dir)
    x = inputs["image"]
    a = clip_tokens.encode_reference(openclip_cv, x, token_type="full")
    b = clip_tokens.encode_reference(comfy_cv_fp32, x, token_type="full")
    assert a.dtype == b.dtype == torch.float32 and a.device.type == b.device.type == "cpu"
    assert rel_rms(b, a) < 1e-5
    # ComfyUI keeps CLIP vision weights in its text-encoder dtype (fp16 by default): fp16-rounded weights,
    # fp32 maths (manual_cast) -> close, not bit-equal
    assert comfy_cv_host_dtype.dtype == torch.float16
    c = clip_tokens.encode_reference(comfy_cv_host_dtype, x, token_type="full")
    assert c.dtype == torch.float32
    assert rel_rms(c, a) < 1e-2


def test_comfy_post_layernorm_not_applied_twice(comfy_cv_fp32, openclip_cv):
    """A host whose CLIPVision already returns post-LN states (no structural flag) is detected via image_embeds."""
    x = pm1_images(1, 1, 64, 80)
    want = clip_tokens.encode_reference(openclip_cv, x)
    vision = comfy_cv_fp32.model.vision_model
    orig = vision.forward

    def post_ln_forward(*args, **kwargs):
        h, i, pooled = orig(*args, **kwargs)
        return vision.post_layernorm(h), i, pooled

    vision.forward = post_ln_forward
    try:
        got = clip_tokens.encode_reference(comfy_cv_fp32, x)
    finally:
        del vision.forward
    assert rel_rms(got, want) < 1e-5


def test_encode_image_compatible_with_comfy(openclip_cv, comfy_cv_fp32):
    """OpenCLIPVision rides on CLIP_VISION sockets: its encode_image matches ComfyUI's field by field."""
    img = (pm1_images(2, 2, 96, 128).movedim(1, -1) + 1) / 2
    a = openclip_cv.encode_image(img, crop=True)
    b = comfy_cv_fp32.encode_image(img, crop=True)
    for key in ("last_hidden_state", "penultimate_hidden_states", "image_embeds"):
        assert a[key].shape == b[key].shape, key
        assert rel_rms(a[key], b[key]) < 1e-5, key
    assert a["mm_projected"] is None


# ------------------------------------------------------------------ batches, uncond, lists

def test_batch_equals_single_runs(openclip_cv, comfy_cv_fp32):
    x = pm1_images(3, 2, 120, 88)
    for cv in (openclip_cv, comfy_cv_fp32):
        both = clip_tokens.encode_reference(cv, x)
        assert both.shape == (2, 256, 128)
        for i in range(2):
            one = clip_tokens.encode_reference(cv, x[i:i + 1])
            assert torch.allclose(both[i:i + 1], one, rtol=0, atol=1e-5 * one.abs().max().item())
        assert (both[0] - both[1]).abs().max() > 1e-2      # really per image


def test_list_of_different_sizes(openclip_cv):
    a, b = pm1_images(4, 1, 200, 296), pm1_images(5, 1, 320, 240)
    tok = clip_tokens.encode_reference(openclip_cv, [a, b[0]])
    assert tok.shape == (2, 256, 128)
    assert rel_rms(tok[:1], clip_tokens.encode_reference(openclip_cv, a)) < 1e-5
    assert rel_rms(tok[1:], clip_tokens.encode_reference(openclip_cv, b)) < 1e-5


def test_uncond_is_zero_tokens_of_same_shape(openclip_cv):
    (ref,) = EncodeReference.execute(openclip_cv, torch.rand(2, 40, 56, 3))
    u = ref.uncond()
    assert u.shape == ref.tokens.shape == (2, 256, 128)
    assert u.dtype == ref.tokens.dtype and u.device == ref.tokens.device
    assert torch.count_nonzero(u) == 0
    assert torch.equal(clip_tokens.uncond_tokens(ref.tokens), u)


def test_reference_object_layout(openclip_cv):
    img = torch.rand(1, 50, 70, 4)                    # RGBA: composited over white, as every node does
    (ref,) = EncodeReference.execute(openclip_cv, img)
    assert isinstance(ref, reference.ColorizerReference)
    assert ref.size == (50, 70) and ref.image.shape == (1, 3, 50, 70)
    over_white = img[..., :3] * img[..., 3:] + (1 - img[..., 3:])
    assert torch.allclose(ref.image, over_white.movedim(-1, 1) * 2 - 1, atol=1e-6)
    padded = ReferencePad.execute(image=img, pad_scale=1.0)[0]
    assert torch.allclose(ref.image, padded.movedim(-1, 1) * 2 - 1, atol=1e-6)   # same rule as Reference Pad
    assert ref.cls.shape == (1, 1, 128) and ref.full.shape == (1, 257, 128)
    assert torch.equal(ref.full[:, 1:], ref.tokens) and ref.clip_dim == 128 and ref.backend == "open_clip"
    ex = ref.expand_to(3)
    assert ex.tokens.shape == (3, 256, 128) and torch.equal(ex.tokens[2], ref.tokens[0])
    assert ex.image.shape == (3, 3, 50, 70)
    (two,) = EncodeReference.execute(openclip_cv, torch.rand(2, 50, 70, 3))
    with pytest.raises(ColorizerInputError):
        two.expand_to(3)


# ------------------------------------------------------------------ dimension checks

def test_context_dim_mismatch_is_a_clear_error(openclip_cv, comfy_cv_fp32, tiny_sd):
    x = pm1_images(6, 1, 32, 32)
    for cv in (openclip_cv, comfy_cv_fp32):
        clip_tokens.encode_reference(cv, x, context_dim=128)       # matching: fine
        with pytest.raises(ColorizerInputError, match=r"128.*does not match the checkpoint's context dim 1024"):
            clip_tokens.encode_reference(cv, x, context_dim=1024)
        with pytest.raises(ColorizerInputError, match="context dim 1024"):
            reference.make_reference(cv, x, context_dim=1024)
    (ref,) = EncodeReference.execute(openclip_cv, torch.rand(1, 32, 32, 3))
    with pytest.raises(ColorizerInputError, match="context dim 1024"):
        ref.check_context_dim(1024)
    ref.check_context_dim(128)
    # a tower without projection yields its width (96)
    noproj = {k: v for k, v in tiny_sd.items() if k != "visual.proj"}
    cv = clip_vision.load_openclip_vision(noproj, heads=HEADS)
    assert clip_tokens.encode_reference(cv, x).shape == (1, 256, 96)
    with pytest.raises(ColorizerInputError, match=r"width 96 \(no projection\) does not match .* context dim 128"):
        clip_tokens.encode_reference(cv, x, context_dim=128)
    with pytest.raises(ColorizerInputError, match="CLIP vision width/projection 1280 does not match the checkpoint's context dim 1024"):
        clip_tokens.check_context_dim(1280, 1024)


# ------------------------------------------------------------------ preprocessing: squash, not crop

def test_non_square_reference_is_squashed_not_cropped(openclip_cv):
    h, w = 100, 300
    ramp = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(1, 3, h, w).contiguous()
    px = clip_tokens.preprocess(ramp)
    mean = torch.tensor(clip_vision.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(clip_vision.CLIP_STD).view(1, 3, 1, 1)
    back = (px * std + mean) * 2 - 1                      # undo normalisation -> [-1,1] after resize
    # the full width survives (squash): every row is the whole ramp from -1 to +1 (align_corners=True; the
    # antialiased bicubic kernel reproduces a ramp to ~1e-3)
    assert torch.allclose(back, torch.linspace(-1, 1, 224).view(1, 1, 1, 224).expand_as(back), atol=3e-3)
    assert abs(back[0, 0, 112, 0].item() + 1) < 3e-3 and abs(back[0, 0, 112, -1].item() - 1) < 3e-3
    # a centre crop would have kept only the middle third: ends near -1/3 and +1/3
    import comfy.clip_vision
    cropped = comfy.clip_vision.clip_preprocess((ramp.movedim(1, -1) + 1) / 2, crop=True)
    cropped = (cropped * std + mean) * 2 - 1
    assert abs(cropped[0, 0, 112, 0].item() + 1 / 3) < 0.02 and abs(cropped[0, 0, 112, -1].item() - 1 / 3) < 0.02

    # and the tokens are those of the squashed picture, not of the crop
    img = pm1_images(7, 1, 150, 330)
    tok = clip_tokens.encode_reference(openclip_cv, img)
    squashed = F.interpolate(img, (224, 224), mode="bicubic", align_corners=True, antialias=True)
    via_squash = clip_tokens.encode_full(openclip_cv, clip_tokens.preprocess(squashed))[:, 1:]
    assert rel_rms(tok, via_squash) < 1e-4
    crop_px = comfy.clip_vision.clip_preprocess((img.movedim(1, -1) + 1) / 2, crop=True)
    via_crop = clip_tokens.encode_full(openclip_cv, crop_px)[:, 1:]
    assert rel_rms(via_crop, tok) > 0.05


def test_no_8bit_quantisation():
    x = torch.full((1, 3, 224, 224), 0.1234567)           # not a k/255 level, already 224 (resize = identity)
    back = (clip_tokens.preprocess(x) * torch.tensor(clip_vision.CLIP_STD).view(1, 3, 1, 1)
            + torch.tensor(clip_vision.CLIP_MEAN).view(1, 3, 1, 1)) * 2 - 1
    assert torch.allclose(back, x, atol=1e-6)
    assert abs(round((0.1234567 + 1) / 2 * 255) / 255 * 2 - 1 - 0.1234567) > 1e-3   # 8-bit would have moved it


# ------------------------------------------------------------------ nodes

def test_loader_node_lists_and_loads(tmp_path, tiny_sd):
    import shutil

    shutil.copy(CLIP_FILE, tmp_path / "tiny.safetensors")
    with clip_runner.clip_vision_folder(tmp_path):
        names = LoadOpenCLIPVision.GET_NODE_INFO_V1()["input"]["required"]["clip_name"][1]["options"]
        assert "tiny.safetensors" in names
        with pytest.raises(ColorizerLoadError, match="head count"):
            LoadOpenCLIPVision.execute("tiny.safetensors")            # width 96: no guess
        (cv,) = LoadOpenCLIPVision.execute("tiny.safetensors", heads=4)
        assert isinstance(cv, clip_vision.OpenCLIPVision) and cv.config["heads"] == 4
        # an open_clip model config next to the file supplies the heads
        (tmp_path / "tiny.json").write_text(json.dumps(
            {"embed_dim": 128, "vision_cfg": {"image_size": 224, "layers": 3, "width": 96, "head_width": 24,
                                               "patch_size": 14}}))
        (cv2,) = LoadOpenCLIPVision.execute("tiny.safetensors")
        assert cv2.config["heads"] == 4
        # a transformers-layout file (ComfyUI's clip_vision_* naming) becomes ComfyUI's CLIP vision model, sized
        # from its weights; an unknown width needs its head count, then it gives the OpenCLIP tower's tokens
        import comfy.clip_vision
        hf = comfy.clip_vision.convert_to_transformers(dict(tiny_sd), "visual.")
        save_file({k: v.contiguous() for k, v in hf.items()}, str(tmp_path / "hf.safetensors"))
        with pytest.raises(ColorizerLoadError, match="head count"):
            LoadOpenCLIPVision.execute("hf.safetensors")
        (cv_hf,) = LoadOpenCLIPVision.execute("hf.safetensors", heads=4)
        x = torch.rand(1, 3, 64, 80) * 2 - 1
        a = clip_tokens.encode_reference(cv_hf, x, token_type="full")
        b = clip_tokens.encode_reference(cv, x, token_type="full")
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert "tiny.safetensors" not in __import__("folder_paths").get_filename_list("clip_vision")


def test_loader_dtype_and_device_handling(tiny_sd):
    import comfy.model_management as mm

    cv = clip_vision.load_openclip_vision(dict(tiny_sd), heads=HEADS, dtype=torch.bfloat16)
    assert next(cv.model.parameters()).dtype == torch.bfloat16
    x = pm1_images(8, 1, 64, 64)
    tok = clip_tokens.encode_reference(cv, x)
    assert tok.dtype == torch.float32 and tok.device == mm.intermediate_device()
    ref32 = clip_tokens.encode_reference(clip_vision.load_openclip_vision(dict(tiny_sd), heads=HEADS), x)
    assert rel_rms(tok, ref32) < 5e-2


def test_unsupported_clip_vision_object():
    with pytest.raises(ColorizerInputError, match="unsupported CLIP vision"):
        clip_tokens.encode_reference(object(), pm1_images(9, 1, 32, 32))


def test_vit_h_shapes_match_comfy_config_h():
    """An OpenCLIP ViT-H/14 file (meta shapes): our inferred config equals ComfyUI's clip_vision_config_h.json,
    and after ComfyUI's OpenCLIP->transformers conversion its loader would pick that config."""
    import os
    import comfy.clip_vision
    from open_clip.transformer import VisionTransformer

    with torch.device("meta"):
        vt = VisionTransformer(image_size=224, patch_size=14, width=1280, layers=32, heads=16, mlp_ratio=4.0,
                               output_dim=1024)
    sd = {"visual." + k: v for k, v in vt.state_dict().items()}
    ours = clip_vision.comfy_vision_config_for_openclip(sd)
    with open(os.path.join(os.path.dirname(comfy.clip_vision.__file__), "clip_vision_config_h.json")) as f:
        theirs = json.load(f)
    for key in ("hidden_act", "hidden_size", "image_size", "intermediate_size", "num_attention_heads",
                "num_hidden_layers", "patch_size", "projection_dim", "model_type"):
        assert ours[key] == theirs[key], key
    hf = comfy.clip_vision.convert_to_transformers(dict(sd), "visual.")
    assert "vision_model.encoder.layers.30.layer_norm1.weight" in hf       # -> clip_vision_config_h.json
    assert "vision_model.encoder.layers.47.layer_norm1.weight" not in hf
    with pytest.raises(ColorizerInputError, match=r"output dim 1024 \(width 1280, projection 1024\) does not match the checkpoint.s context dim 768"):
        clip_tokens.check_context_dim(ours["projection_dim"], 768, width=1280, projection=1024)


def test_loader_falls_back_to_comfy_model_without_open_clip(monkeypatch, openclip_cv):
    import sys
    import comfy.clip_vision

    monkeypatch.setitem(sys.modules, "open_clip.transformer", None)     # import fails like a missing package
    cv = clip_vision.load_vision_file(str(CLIP_FILE), heads=HEADS)
    assert isinstance(cv, comfy.clip_vision.ClipVisionModel)
    x = pm1_images(10, 1, 64, 48)
    assert rel_rms(clip_tokens.encode_reference(cv, x), clip_tokens.encode_reference(openclip_cv, x)) < 1e-2

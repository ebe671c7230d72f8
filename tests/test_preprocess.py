"""Preprocessing on synthetic pictures: every kind of line art, masks from elsewhere, sizes, errors, weights."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import folder_paths
from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError
from colorize_diffusion.model_folders import PREPROCESSORS
from colorize_diffusion.model_patches.common import extra_networks, preprocessors
from colorize_diffusion.nodes import preprocess_nodes as P
from colorize_diffusion.preprocess import convert, extractors, masks, reference, sketch, weights
from colorize_diffusion.preprocess.extractor_nets import LineartDetector
from colorize_diffusion.preprocess.isnet import ISNetDIS


def drawing(h=96, w=64, ink=(0.0, 0.0, 0.0), paper=(1.0, 1.0, 1.0)):
    """[1, h, w, 3]: a cross and a box outline on paper (lines 2 px)."""
    img = torch.tensor(paper).expand(1, h, w, 3).clone()
    ink = torch.tensor(ink)
    img[0, h // 2 - 1:h // 2 + 1, 8:w - 8] = ink
    img[0, 10:h - 10, w // 2 - 1:w // 2 + 1] = ink
    img[0, 20:22, 12:w - 12] = ink
    img[0, h - 22:h - 20, 12:w - 12] = ink
    return img


def prepare(img, **kw):
    kw.setdefault("height", 128)
    kw.setdefault("width", 128)
    return sketch.prepare_sketch(img, **kw)


@pytest.fixture
def weight_dir(tmp_path, monkeypatch):
    """An empty registered preprocessor folder (controlnet_aux's cache not searched)."""
    monkeypatch.setitem(folder_paths.folder_names_and_paths, PREPROCESSORS, ([str(tmp_path)], set()))
    monkeypatch.setattr(preprocessors, "aux_annotator_dirs", lambda: [])
    extra_networks.clear()
    yield tmp_path
    extra_networks.clear()


# ----------------------------------------------------------------------------------------- line art kinds
def test_black_on_white_becomes_white_lines_on_black():
    out = prepare(drawing(96, 64))
    assert out.polarity == ("invert",)
    s = out.sketch[0]
    left, top, w, h = out.crop_box
    assert (left, top, w, h) == (21, 0, 85, 128)         # 64 * 128/96 = 85.3 -> 85 wide, centred
    assert torch.all(s[:, :, :left] == -1) and torch.all(s[:, :, left + w:] == -1)      # padding is black
    inner = s[:, :, left:left + w]
    assert inner[:, 64, 20:60].mean() > 0.8          # the horizontal line is bright
    assert inner[:, 5, 5].max() < -0.95              # paper is black
    img = out.image()
    assert img.shape == (1, 128, 128, 3) and img.min() >= 0 and img.max() <= 1


def test_white_on_black_is_kept_and_matches_inverted_drawing():
    a = prepare(drawing(96, 64))
    b = prepare(1 - drawing(96, 64))
    assert b.polarity == ("keep",)
    assert torch.allclose(a.sketch, b.sketch, atol=1e-6)


def test_rgba_with_transparent_background():
    base = prepare(drawing(96, 64)).sketch
    d = drawing(96, 64)
    alpha = (d[..., :1] < 0.5).float()                    # strokes opaque, paper transparent
    for stroke in (0.0, 1.0):                             # dark or light strokes on a black transparent area
        rgba = torch.cat([torch.full_like(d, stroke) * alpha, alpha], -1)
        out = prepare(rgba)
        assert torch.allclose(out.sketch, base, atol=1e-6), stroke
    # LoadImage style: RGB all black + MASK (1 = transparent)
    rgb_black = torch.zeros_like(d)
    out = prepare(rgb_black, transparency=1 - alpha[..., 0])
    assert torch.allclose(out.sketch, base, atol=1e-6)
    # LoadImage's 64x64 zero placeholder (no alpha) is ignored
    out = prepare(d, transparency=torch.zeros(1, 64, 64))
    assert torch.equal(out.sketch, base)
    with pytest.raises(ColorizerInputError, match="blank"):
        prepare(rgb_black)                                # without the mask: nothing to see, and we say why


def test_grey_single_channel_and_grey_lines():
    d = drawing(96, 64)
    one = prepare(d[..., :1])
    assert torch.equal(one.sketch, prepare(d).sketch)
    grey = drawing(96, 64)
    grey[:, 40:56, 8:56] = 0.5                              # a thick 50 % grey bar
    s = prepare(grey, polarity="invert").sketch[0]
    left = prepare(grey).crop_box[0]
    assert s[:, 64, left + 40].abs().max() < 1e-3          # half-way: 0 in [-1, 1]
    assert prepare(grey).polarity == ("invert",)


def test_coloured_lines_monochrome():
    red = drawing(96, 64, ink=(1.0, 0.0, 0.0))
    auto = prepare(red)
    black = prepare(drawing(96, 64))
    assert torch.allclose(auto.sketch, black.sketch, atol=1e-6)      # red counts like black
    off = prepare(red, monochrome="off", polarity="invert").sketch[0]
    left = auto.crop_box[0]
    assert off[0, 64, left + 40] < -0.9 and off[1, 64, left + 40] > 0.9   # official: red channel sees no line


def test_polarity_override():
    d = drawing(96, 64)
    kept = prepare(d, polarity="keep").sketch[0]       # official 'none' on black-on-white: white paper
    left, top, w, h = prepare(d).crop_box
    assert kept[:, 5, left + 5].min() > 0.95 and kept[:, 5, 0].max() == -1   # pad stays -1
    inv = prepare(1 - d, polarity="invert").sketch[0]
    assert inv[:, 5, left + 5].min() > 0.95


def _manga_page(kind: str) -> torch.Tensor:
    """A drawn page [H, W, 3], black ink on white paper: line art (1-2 px strokes, a screentone patch), plus
    black panel gutters, or white margins with large black fills (with white highlight strokes in them)."""
    g = torch.Generator().manual_seed(5)
    page = torch.ones(240, 180, 3)
    for _ in range(40):                                          # strokes
        y, x = int(torch.randint(10, 225, (1,), generator=g)), int(torch.randint(10, 160, (1,), generator=g))
        if torch.rand(1, generator=g) < 0.5:
            page[y:y + 2, x:x + 15] = 0
        else:
            page[y:y + 15, x:x + 1] = 0
    page[150:180, 20:60][::4, ::4] = 0                           # screentone dots
    if kind == "gutters":
        page[:8], page[-8:], page[:, :8], page[:, -8:] = 0, 0, 0, 0
        page[115:125], page[:, 85:93] = 0, 0                     # black gutters between four panels
    if kind == "fills":
        page[30:90, 40:140] = 0                                  # hair, clothes: large black fills
        page[160:220, 100:170] = 0
        page[50:52, 50:120], page[180:200, 130:131] = 1, 1       # white highlight strokes in the fills
    return page


@pytest.mark.parametrize("kind", ["plain", "gutters", "fills"])
def test_auto_polarity_reads_the_strokes_not_the_border(kind):
    """Black lines on white come out as white lines on black, however much black gutter or fill the page has;
    the same pages drawn white on black are kept. `keep`/`invert` (the app's own choices) stay as given."""
    page = _manga_page(kind)
    assert sketch.decide_polarity(page, "auto") == "invert"
    assert sketch.decide_polarity(1 - page, "auto") == "keep"
    assert sketch.decide_polarity(page, "keep") == "keep" and sketch.decide_polarity(1 - page, "invert") == "invert"
    prepared = prepare(page[None])
    assert prepared.polarity == ("invert",)
    inside = prepared.sketch[0, 0][prepared.sketch[0, 0] > -1]
    assert (inside < 0).float().mean() > 0.5                     # mostly black paper after the inversion


# ----------------------------------------------------------------------------------------- geometry
def test_aspect_fit_truncation_and_pad_values():
    img = torch.rand(1, 70, 98, 3)
    out = prepare(img, height=512, width=512, polarity="invert", monochrome="off")
    assert out.crop_box == (0, 73, 511, 365)              # int(98 * 512/98 ...) truncation: 511 wide
    x = -(img.permute(0, 3, 1, 2) * 2 - 1)
    want = F.interpolate(x, size=(365, 511), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(out.sketch[:, :, 73:438, 0:511], want)
    s = out.sketch
    assert torch.all(s[:, :, :73] == -1) and torch.all(s[:, :, 438:] == -1) and torch.all(s[:, :, :, 511] == -1)
    assert sketch.fit_size(77, 58, 640, 512) == (639, 482)       # 77 * 640/77 = 639.99.. -> 639


def test_unclamped_sketch_and_clamped_image():
    img = torch.ones(1, 40, 40, 3)
    img[:, ::4] = 0
    out = prepare(img, height=256, width=256, polarity="invert")
    assert out.sketch.max() > 1.0 or out.sketch.min() < -1.0    # bicubic overshoot is kept for the model
    im = out.image()
    assert im.min() >= 0 and im.max() <= 1


@pytest.mark.parametrize("hw,kw,want", [
    ((100, 100), {}, (512, 512)),
    ((300, 600), {}, (384, 704)),
    ((300, 600), {"base": 768}, (512, 1088)),
    ((600, 300), {}, (704, 384)),
    ((300, 600), {"width": 768}, (384, 768)),
    ((300, 600), {"height": 512}, (512, 1024)),
    ((300, 600), {"width": 640, "height": 448}, (448, 640)),
    ((64, 1024), {}, (128, 2048)),
])
def test_generation_size_rule(hw, kw, want):
    assert sketch.choose_size(*hw, **kw) == want


def test_generation_size_errors():
    with pytest.raises(ColorizerInputError, match="multiple of 32"):
        sketch.choose_size(100, 100, width=500)
    assert sketch.choose_size(100, 100, width=160, height=96) == (96, 160)     # XL sizes: multiples of 32
    with pytest.raises(ColorizerInputError, match="exceeds"):
        sketch.choose_size(10, 5000)


def test_node_outputs_size_and_types():
    img = torch.cat([drawing(96, 64), 1 - drawing(96, 64)])
    image, w, h, cd = P.PrepareSketch.execute(img, size_base=512)
    assert (h, w) == (640, 448) and image.shape == (2, 640, 448, 3)
    assert isinstance(cd, sketch.PreparedSketch) and cd.sketch.shape == (2, 3, 640, 448)
    assert cd.polarity == ("invert", "keep") and torch.allclose(cd.sketch[0], cd.sketch[1], atol=1e-6)


# ----------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("img,match", [
    (torch.ones(1, 64, 64, 3), "blank"),
    (torch.zeros(1, 64, 64, 3), "blank"),
    (torch.ones(1, 1, 1, 3), "at least"),
    (torch.ones(1, 9000, 10, 3), "largest side"),
    (torch.ones(64, 64), "IMAGE"),
    (torch.full((1, 64, 64, 3), float("nan")), "NaN"),
])
def test_bad_sketches(img, match):
    with pytest.raises(ColorizerInputError, match=match):
        P.PrepareSketch.execute(img)


def test_blank_after_standard_extraction_and_sketchkeras():
    with pytest.raises(ColorizerInputError, match="blank"):
        prepare(torch.ones(1, 64, 64, 3), method="standard")
    with pytest.raises(ColorizerInputError, match="NaN"):
        extractors.keras_input(np.full((64, 64, 3), 255, np.uint8))


def test_unknown_options():
    with pytest.raises(ColorizerInputError, match="polarity"):
        prepare(drawing(), polarity="sideways", method="standard")
    with pytest.raises(ColorizerInputError, match="method"):
        prepare(drawing(), method="hed")
    with pytest.raises(ColorizerInputError, match="monochrome"):
        prepare(drawing(), monochrome="maybe")


def test_too_thin_sketch():
    with pytest.raises(ColorizerInputError, match="too thin"):
        sketch.fit_size(8, 8000, 64, 64)


# ----------------------------------------------------------------------------------------- masks
def _ref_and_mask():
    img = torch.rand(2, 40, 60, 3)
    m = torch.zeros(2, 40, 60)
    m[:, 10:30, 20:40] = 1
    return img, m


@pytest.mark.parametrize("layout", ["hw", "bhw", "b1hw", "b3hw", "bhw1"])
def test_masks_from_anywhere(layout):
    img, m = _ref_and_mask()
    want = torch.where(m[..., None] >= 0.5, torch.ones_like(img), img)
    given = {"hw": m[0], "bhw": m, "b1hw": m[:, None], "b3hw": m[:, None].repeat(1, 3, 1, 1),
             "bhw1": m[..., None]}[layout]
    out = P.BackgroundOnlyReference.execute(img, given, 0.5)[0]
    assert torch.equal(out, want)
    assert torch.all(out[:, 15, 25] == 1) and torch.equal(out[:, 0, 0], img[:, 0, 0])


def test_mask_batch_and_size_errors():
    img, m = _ref_and_mask()
    with pytest.raises(ColorizerInputError, match="3 masks for 2 images"):
        P.BackgroundOnlyReference.execute(img, torch.zeros(3, 40, 60), 0.5)
    with pytest.raises(ColorizerInputError, match="aspect"):
        P.BackgroundOnlyReference.execute(img, torch.zeros(2, 30, 60), 0.5)
    with pytest.raises(ColorizerInputError, match="aspect"):                 # too narrow for a pad scale <= 2
        P.BackgroundOnlyReference.execute(img, torch.zeros(2, 40, 20), 0.5)
    with pytest.raises(ColorizerInputError, match="dimensions"):
        P.MaskOverlay.execute(img, torch.zeros(1, 1, 1, 40, 60))


def test_mask_same_aspect_is_resized_and_narrower_mask_is_padded():
    img, m = _ref_and_mask()
    half = m[:, ::2, ::2]
    out = masks.fit_mask(convert.as_mask_batch(half), 40, 60)
    assert out.shape == (2, 1, 40, 60) and out[:, 0, 20, 30].min() == 1 and out[:, 0, 2, 2].max() == 0
    padded_img = reference.pad_image_with_margin(img, 1.5)               # 60 -> 90 wide
    out = masks.fit_mask(convert.as_mask_batch(m), 40, 90)
    assert out.shape == (2, 1, 40, 90)
    assert torch.equal(out[:, 0, :, 15:75], m) and out[..., :15].max() == 0 and out[..., 75:].max() == 0
    assert torch.equal(padded_img[:, :, 15:75], img) and padded_img[:, :, :15].min() == 1


def test_reference_pad_node_and_mask():
    img, m = _ref_and_mask()
    out, pm = P.ReferencePad.execute(img, 1.3, m)
    assert out.shape == (2, 40, 78, 3) and pm.shape == (2, 40, 78)
    assert torch.equal(out[:, :, 9:69], img) and out[:, :, :9].min() == 1 and out[:, :, 69:].min() == 1
    assert torch.equal(pm[:, :, 9:69], m) and pm[:, :, :9].max() == 0
    same, zero = P.ReferencePad.execute(img, 1.0)
    assert torch.equal(same, img) and zero.shape == (2, 40, 60) and zero.max() == 0


def test_reference_mask_node_with_external_mask():
    img, m = _ref_and_mask()
    dil, raw = P.ReferenceMask.execute(img, True, 1024, m[:1])
    assert torch.equal(raw, m)
    assert dil[:, 10 - 5:30 + 5, 20 - 5:40 + 5].min() == 1 and dil[:, 0:4].max() == 0   # 11x11 dilation
    assert dil.sum() > raw.sum()
    # the XL app: 21x21, then binarised at 0.5
    soft = m[:1] * 0.6
    xl, _ = P.ReferenceMask.execute(img, True, 1024, soft, dilation=21, binarize=True)
    assert set(xl.unique().tolist()) == {0.0, 1.0}
    assert xl[:, 10 - 10:30 + 10, 20 - 10:40 + 10].min() == 1 and xl.sum() > dil.sum()
    low, _ = P.ReferenceMask.execute(img, True, 1024, m[:1] * 0.4, dilation=21, binarize=True)
    assert low.max() == 0                     # 0.4 is below the XL app's 0.5


def test_mask_overlay_modes():
    img, m = _ref_and_mask()
    soft = m * 0.7
    prev = P.MaskOverlay.execute(img, soft, "mask", 0.5)[0]
    assert torch.allclose(prev[:, 15, 25], torch.full((2, 3), 0.7)) and prev[:, 0, 0].max() == 0
    low = P.MaskOverlay.execute(img, soft, "mask", 0.8)[0]
    assert low.max() == 0                                                    # thresholded away
    fg = P.MaskOverlay.execute(img, m, "foreground only", 0.5)[0]
    assert fg[:, 0, 0].min() == 1 and torch.allclose(fg[:, 15, 25], img[:, 15, 25], atol=1 / 255)
    bg = P.MaskOverlay.execute(img, m, "background only", 0.5)[0]
    assert bg[:, 15, 25].min() == 1 and torch.allclose(bg[:, 0, 0], img[:, 0, 0], atol=1 / 255)
    tint = P.MaskOverlay.execute(img, m, "tint", 0.5, 1.0, "#00ff00")[0]
    assert torch.equal(tint[:, 15, 25], torch.tensor([[0.0, 1.0, 0.0]] * 2)) and torch.equal(tint[:, 0, 0],
                                                                                           img[:, 0, 0])
    with pytest.raises(ColorizerInputError, match="#rrggbb"):
        P.MaskOverlay.execute(img, m, "tint", 0.5, 0.5, "red")


def test_mask_helpers():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 16, 16] = 1
    d = masks.dilate(m)
    assert d.sum() == 121 and d[0, 0, 11:22, 11:22].min() == 1
    assert masks.scaled_resize(torch.ones(1, 1, 64, 48)).shape == (1, 1, 8, 6)
    img = torch.zeros(1, 3, 32, 32)
    assert masks.bleach(img, d)[0, :, 16, 16].tolist() == [1, 1, 1] and masks.bleach(img, d)[0, 0, 0, 0] == 0
    assert masks.keep_foreground(img, d)[0, 0, 0, 0] == 1 and masks.keep_foreground(img, d)[0, 0, 16, 16] == 0


def test_rmbg_proceed_with_callable_network():
    seen = {}

    def net(x):
        seen["shape"] = tuple(x.shape)
        return [None, (x[:, :1] > 0).float() * 20 - 10]
    x = torch.full((1, 3, 50, 40), -1.0)
    x[:, :, 20:30, 15:25] = 1
    mask = masks.rmbg_proceed(net, x, dilate_mask=True)
    raw = masks.rmbg_proceed(net, x)
    assert seen["shape"] == (1, 3, 1024, 1024) and mask.shape == raw.shape == (1, 1, 50, 40)
    assert raw[0, 0, 25, 20] > 0.99 and raw[0, 0, 2, 2] < 0.01
    assert mask[0, 0, 17, 20] > 0.99 and mask.min() >= 0 and mask.max() <= 1


# ----------------------------------------------------------------------------------------- weights
def test_missing_weights_name_file_and_folder(weight_dir):
    prepared = prepare(drawing())
    with pytest.raises(ColorizerLoadError) as err:
        P.SketchMask.execute(prepared)
    assert "sketch-segment.safetensors" in str(err.value) and str(weight_dir) in str(err.value)
    with pytest.raises(ColorizerLoadError, match="model.pth"):
        P.ExtractLineart.execute(drawing(), "sketchKeras")
    with pytest.raises(ColorizerLoadError, match="erika.pth"):
        P.PrepareSketch.execute(drawing(), method="manga")


def test_preprocessor_folder_is_registered_and_relocatable(tmp_path, monkeypatch):
    paths = folder_paths.get_folder_paths(PREPROCESSORS)
    assert os.path.join(folder_paths.models_dir, "colorizediffusion", "preprocessors") in paths
    monkeypatch.setattr(preprocessors, "aux_annotator_dirs", lambda: [])
    sub = tmp_path / "elsewhere" / "lines"
    sub.mkdir(parents=True)
    (sub / "erika.pth").write_bytes(b"x")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, PREPROCESSORS, (list(paths), set()))
    folder_paths.add_model_folder_path(PREPROCESSORS, str(tmp_path / "elsewhere"))   # extra_model_paths entry
    found = weights.find_weight_file("manga", folder_paths.get_folder_paths(PREPROCESSORS))
    assert found == str(sub / "erika.pth")


def test_controlnet_aux_annotator_files_are_reused(tmp_path):
    ours, aux = tmp_path / "ours", tmp_path / "aux"
    ours.mkdir()
    aux.mkdir()
    for f in ("sk_model.pth", "model.pth", "sketch-segment.safetensors"):
        (aux / f).write_bytes(b"x")
    assert weights.find_weight_file("sk_model", [ours], [aux]) == str(aux / "sk_model.pth")
    for name in ("sketchKeras", "isnet_sketch"):               # not lllyasviel/Annotators files: not taken there
        with pytest.raises(ColorizerLoadError, match=str(ours)):
            weights.find_weight_file(name, [ours], [aux])
    (ours / "sk_model.pth").write_bytes(b"y")                  # our folder wins
    assert weights.find_weight_file("sk_model", [ours], [aux]) == str(ours / "sk_model.pth")


def _sk_state():
    torch.manual_seed(0)
    return LineartDetector().model.state_dict()


def test_loader_rules(tmp_path):
    sd = _sk_state()
    # released layout (Generator keys), .pth, every key with 'module.' and wrapped in 'state_dict'
    path = tmp_path / "sk_model.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, path)
    net = weights.load_network("sk_model", str(path))
    assert torch.equal(net.model.model0[1].weight, sd["model0.1.weight"])
    # the wrapper's own layout ('model.' prefix) loads too; safetensors too
    st = tmp_path / "sk_model.safetensors"
    save_file({"model." + k: v.contiguous() for k, v in sd.items()}, str(st))
    assert torch.equal(weights.load_network("sk_model", str(st)).model.model4[1].bias, sd["model4.1.bias"])
    # wrong shape / missing keys / wrong file
    bad = dict(sd)
    bad["model0.1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(bad, path)
    with pytest.raises(ColorizerLoadError, match=r"model0.1.weight: .* expects shape .*, the file has \[64, 3, 5, 5\]"):
        weights.load_network("sk_model", str(path))
    torch.save({k: v for k, v in sd.items() if "model4" not in k}, path)
    with pytest.raises(ColorizerLoadError, match="lacks .* key"):
        weights.load_network("sk_model", str(path))
    with pytest.raises(ColorizerLoadError, match="does not take"):
        weights.load_network("anime2sketch", str(st))


@pytest.fixture(scope="module")
def isnet_file(tmp_path_factory):
    """A randomly initialised ISNet in the released layout, without the optional num_batches_tracked."""
    torch.manual_seed(0)
    net = ISNetDIS()
    path = tmp_path_factory.mktemp("isnet") / "isnetis.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")},
              str(path))
    return path, net


def test_batchnorm_num_batches_tracked_may_be_absent(isnet_file):
    path, net = isnet_file
    loaded = weights.load_network("isnet", str(path))
    assert torch.equal(loaded.side6.weight, net.side6.weight)
    assert torch.equal(loaded.stage1.rebnconv1.bn_s1.running_var, net.stage1.rebnconv1.bn_s1.running_var)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = str(tmp_path / "pickle_code_ran")
    path = tmp_path / "netG.pth"
    torch.save({"model.model.0.weight": _Exploit(marker)}, path)
    with pytest.raises(ColorizerLoadError, match="was refused: it is a pickle"):
        weights.load_network("anime2sketch", str(path))
    assert not os.path.exists(marker)


def test_corrupt_files(tmp_path):
    p = tmp_path / "sketch-segment.safetensors"
    p.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ColorizerLoadError, match="not a readable safetensors"):
        weights.load_network("isnet_sketch", str(p))


# ----------------------------------------------------------------------------------------- nodes with networks
def test_sk_model_nodes_end_to_end(weight_dir):
    torch.save(_sk_state(), weight_dir / "sk_model.pth")
    img = drawing(96, 64)
    line = P.ExtractLineart.execute(img, "sk_model", 256)[0]
    assert line.shape == (1, 96, 64, 3)
    sq = P.ExtractLineart.execute(img, "sk_model", 256, "extractor")[0]
    assert sq.shape == (1, 256, 256, 3) and sq.max() <= 0.5 + 1e-6      # -sigmoid lies in [-1, 0]
    _, w, h, cd = P.PrepareSketch.execute(img, method="sk_model", extract_size=256)
    assert cd.sketch.shape == (1, 3, h, w) and cd.polarity == ("sk_model",)
    left, top, cw, ch = cd.crop_box
    assert torch.all(cd.sketch[..., :left] == -1)
    with pytest.raises(ColorizerInputError, match="multiple of 256"):
        P.ExtractLineart.execute(img, "anime2sketch", 384)


def test_isnet_nodes_end_to_end(weight_dir, isnet_file):
    os.symlink(isnet_file[0], weight_dir / "sketch-segment.safetensors")
    os.symlink(isnet_file[0], weight_dir / "isnetis.safetensors")
    img, cd_w, cd_h, cd = P.PrepareSketch.execute(drawing(96, 64), width=128, height=192)
    exact = P.SketchMask.execute(cd, "auto", 128)[0]
    approx = P.SketchMask.execute(img, "auto", 128)[0]
    assert exact.shape == approx.shape == (1, 192, 128)
    assert exact.min() >= 0 and exact.max() <= 1 and (exact - approx).abs().max() < 0.05
    ref = torch.rand(2, 50, 70, 3)
    dil, raw = P.ReferenceMask.execute(ref, True, 128)
    assert dil.shape == raw.shape == (2, 50, 70) and torch.all(dil >= raw) and dil.max() <= 1


def test_preprocessor_networks_are_managed_by_comfyui(weight_dir, isnet_file):
    """The ISNet of the mask nodes lives in a model patcher that ComfyUI's model management loaded (so it is
    offloaded and freed like any model), and its weights are the file's."""
    import comfy.model_management as mm

    os.symlink(isnet_file[0], weight_dir / "isnetis.safetensors")
    P.ReferenceMask.execute(torch.rand(1, 50, 70, 3), True, 128)
    patcher = preprocessors.network("isnet")
    assert any(loaded.model is patcher for loaded in mm.current_loaded_models)
    assert patcher.model.conv_in.weight.device == mm.get_torch_device()
    want = isnet_file[1].state_dict()
    got = patcher.model.state_dict()
    assert all(torch.equal(got[k].cpu(), want[k]) for k in want if not k.endswith("num_batches_tracked"))


def test_batch_work_checks_every_input_before_asking_for_a_network_and_ticks_per_picture():
    """preprocess.batches, below the nodes: a bad input is refused before the network is loaded; each picture
    ticks once (the node's progress bar and interrupt)."""
    from colorize_diffusion.preprocess import batches

    asked, ticks = [], []

    def network(name):
        asked.append(name)
        raise AssertionError("the network must not be asked for")

    with pytest.raises(ColorizerInputError, match="10x10 pixels"):
        batches.prepare_sketches(torch.rand(1, 10, 10, 3), network, lambda: ticks.append(1), method="sketchKeras",
                                 width=512, height=512)
    with pytest.raises(ColorizerInputError, match="every pixel as transparent"):
        batches.prepare_sketches(drawing(), network, lambda: ticks.append(1), method="sketchKeras",
                                 transparency_mask=torch.ones(1, 96, 64))
    assert asked == [] and ticks == []
    prepared = batches.prepare_sketches(torch.cat([drawing(), drawing(ink=(0.2, 0.2, 0.2))]), network,
                                        lambda: ticks.append(1), width=128, height=128)
    assert ticks == [1, 1] and prepared.sketch.shape == (2, 3, 128, 128) and asked == []
    lines = batches.extract_lines(drawing(), network, lambda: ticks.append(1), method="standard")
    assert lines.shape == (1, 3, 96, 64) and ticks == [1, 1, 1] and asked == []

"""ColorFlow Decolorize through the node with the golden set's tiny networks (../shared/golden_colorflow_decolorize,
in the released snapshot layout): the three styles at 1.5x the working resolution, what each output is, the seed,
and bad input or files refused with one clear message before any work. Numerical parity: test_golden.py."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError

from chain_support import node
from shared_data import GOLDEN_COLORFLOW_DECOLORIZE

MODELS = GOLDEN_COLORFLOW_DECOLORIZE / "models"
NODE = "ColorizeDiffusionColorFlowDecolorize"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """models/colorflow/<snapshot>/{LE, ScreenStyle} (copies of the tiny released-layout files)."""
    import folder_paths

    root = tmp_path_factory.mktemp("colorflow")
    for sub in ("LE", "ScreenStyle"):
        shutil.copytree(MODELS / sub, root / "snap" / sub)
    folder_paths.add_model_folder_path("colorflow", str(root))
    return root / "snap"


def _page(h=90, w=70, seed=0):
    g = torch.Generator().manual_seed(seed)
    page = torch.rand((1, h, w, 3), generator=g)
    page[:, h // 3:h // 2] = 0.05          # a dark band (Sketch_Shading's black areas)
    return page


def _run(style, page=None, resolution="256x256", seed=0, folder="snap"):
    return node(NODE, page=_page() if page is None else page, style=style, folder=folder, resolution=resolution,
                seed=seed)


def test_folder_is_offered(snapshot):
    from colorize_diffusion.nodes.colorflow_decolorize_nodes import _snapshot_folders

    assert "snap" in _snapshot_folders()


@pytest.mark.parametrize("style", ["Sketch", "Sketch_Shading", "GrayImage(ScreenStyle)"])
def test_styles_give_grey_pictures_at_one_and_a_half_times_the_resolution(snapshot, style):
    context, vae_input = _run(style, page=_page().repeat(2, 1, 1, 1))
    assert context.shape == vae_input.shape == (2, 384, 384, 3)           # 1.5 x 256x256, a batch of 2
    for x in (context, vae_input):
        assert torch.equal(x[..., 0], x[..., 1]) and torch.equal(x[..., 0], x[..., 2])
        assert torch.equal(x * 255, (x * 255).round())                     # uint8 pictures
        assert x.std() > 0
    if style == "Sketch_Shading":                                          # thresholds change the context only
        assert not torch.equal(context, vae_input)
        assert (context <= vae_input).all()
    else:
        assert torch.equal(context, vae_input)


def test_presets_size_and_aspect(snapshot):
    context, _ = _run("Sketch", resolution="256x400")
    assert context.shape == (1, 600, 384, 3)


def test_screen_style_seed(snapshot):
    a = _run("GrayImage(ScreenStyle)", seed=1)[0]
    b = _run("GrayImage(ScreenStyle)", seed=1)[0]
    c = _run("GrayImage(ScreenStyle)", seed=2)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)                      # the ScreenVAE's dropout and noise are live, as in the app
    assert torch.equal(_run("Sketch", seed=1)[0], _run("Sketch", seed=2)[0])


def test_bad_input_gets_one_clear_message(snapshot, tmp_path):
    import folder_paths

    with pytest.raises(ColorizerInputError, match="style 'Colour' is not one of Sketch, Sketch_Shading"):
        _run("Colour")
    with pytest.raises(ColorizerInputError, match="resolution '100x100' is not one of 640x640"):
        _run("Sketch", resolution="100x100")
    with pytest.raises(ColorizerInputError, match="page must be an IMAGE"):
        _run("Sketch", page=torch.rand(1, 2, 3, 4, 5))
    with pytest.raises(ColorizerInputError, match="page is 4x4 pixels"):
        _run("Sketch", page=torch.rand(1, 4, 4, 3))
    with pytest.raises(ColorizerLoadError, match="nowhere not found in models/colorflow"):
        _run("Sketch", folder="nowhere")

    # a snapshot without the ScreenVAE decoder; a decoder file holding another network
    flows = tmp_path / "flows"
    shutil.copytree(snapshot, flows / "no_dec")
    dec = os.path.join("ScreenStyle", "ScreenVAE", "latest_net_dec.pth")
    (flows / "no_dec" / dec).unlink()
    folder_paths.add_model_folder_path("colorflow", str(flows))
    with pytest.raises(ColorizerLoadError, match="ScreenStyle/ScreenVAE/latest_net_dec.pth not found in"):
        _run("GrayImage(ScreenStyle)", folder="no_dec")
    assert _run("Sketch", folder="no_dec")[0].shape == (1, 384, 384, 3)  # the line model alone suffices
    shutil.copytree(snapshot, flows / "swapped")
    shutil.copy(flows / "swapped" / "LE" / "erika.pth", flows / "swapped" / dec)
    with pytest.raises(ColorizerLoadError, match="latest_net_dec.pth: not the ScreenStyle dec network"):
        _run("GrayImage(ScreenStyle)", folder="swapped")
    enc = flows / "swapped" / "ScreenStyle" / "ScreenVAE" / "latest_net_enc.pth"
    shutil.copy(snapshot / "LE" / "erika.pth", enc)
    with pytest.raises(ColorizerLoadError, match="latest_net_enc.pth: not the ScreenStyle enc network"):
        _run("GrayImage(ScreenStyle)", folder="swapped")


def test_code_executing_pickle_is_refused(snapshot, tmp_path):
    import folder_paths

    bad = tmp_path / "pickled" / "pickle_snap"
    (bad / "LE").mkdir(parents=True)
    torch.save({"x": torch.nn.Linear(2, 2)}, bad / "LE" / "erika.pth")     # a module object: not weights-only
    folder_paths.add_model_folder_path("colorflow", str(tmp_path / "pickled"))
    with pytest.raises(ColorizerLoadError, match="erika.pth"):
        _run("Sketch", folder="pickle_snap")


def _manifest(name: str) -> dict:
    import json

    rows = (GOLDEN_COLORFLOW_DECOLORIZE / "manifests" / f"{name}.tsv").read_text().splitlines()[1:]
    return {key: tuple(json.loads(shape)) for key, shape, _ in (r.split("\t") for r in rows)}


def test_full_size_networks_have_the_released_files_keys_and_shapes():
    """The README's manifests of the real files (full widths): the port's networks, shaped from those state
    dicts, take exactly their keys with their shapes; the three unused files carry the marker keys the loader
    checks."""
    from colorize_diffusion.comfy_compat import expected_state_shapes
    from colorize_diffusion.preprocess import decolorize_files as files
    from colorize_diffusion.preprocess.extractor_nets import MangaLineNet, manga_widths
    from colorize_diffusion.preprocess.screen_vae import decoder_from_state, generator_from_state

    def meta(shapes):
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}

    with torch.device("meta"):
        for manifest, build in (("LE_erika", lambda sd: MangaLineNet(manga_widths(sd))),
                                ("ScreenStyle_latest_net_G_RGB2INTSCR", generator_from_state),
                                ("ScreenStyle_ScreenVAE_latest_net_dec", decoder_from_state)):
            want = _manifest(manifest)
            assert expected_state_shapes(build(meta(want))) == want, manifest
    assert manga_widths(meta(_manifest("LE_erika"))) == (24, 48, 96, 192, 384, 16)
    for name, markers in files._UNUSED_MARKERS.items():
        stem = {"enc": "ScreenStyle_ScreenVAE_latest_net_enc"}.get(name, f"ScreenStyle_latest_net_{name}")
        assert set(markers) <= set(_manifest(stem)), name


def test_networks_load_once_per_chapter_and_again_when_a_file_changes(snapshot, monkeypatch):
    """The decolorize networks go the pack's one extra-network path: one ModelPatcher per snapshot and style's
    files, read again when a file changes, loaded by ComfyUI's model management for a run."""
    import comfy.model_management as mm

    from colorize_diffusion.model_patches.common import extra_networks, preprocessors

    loads = []
    real = preprocessors.load_decolorize_models
    monkeypatch.setattr(preprocessors, "load_decolorize_models",
                        lambda root, style: loads.append(style) or real(root, style))
    extra_networks.clear()
    for seed in (0, 1):
        _run("Sketch", page=_page(seed=seed))
    assert loads == ["Sketch"]
    erika = snapshot / "LE" / "erika.pth"
    os.utime(erika, ns=(erika.stat().st_atime_ns, erika.stat().st_mtime_ns + 10**9))
    _run("Sketch")
    assert loads == ["Sketch", "Sketch"]
    patcher = preprocessors.decolorize_networks(str(snapshot), "Sketch")
    assert loads == ["Sketch", "Sketch"] and any(m.model is patcher for m in mm.current_loaded_models)

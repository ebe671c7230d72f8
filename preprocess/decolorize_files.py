"""The decolorize step's files in the released TencentARC/ColorFlow snapshot layout, read unchanged:

    LE/erika.pth                                                     the line model (res_skip), Sketch styles
    ScreenStyle/color2manga/color2manga_cycle_ganstft/latest_net_{G_INTSCR2RGB,G_RGB2INTSCR,E}.pth
    ScreenStyle/ScreenVAE/latest_net_{enc,dec}.pth                    GrayImage(ScreenStyle)

The app's loaders are strict and open all five ScreenStyle files although the colour -> screen direction uses only
`G_RGB2INTSCR` and `dec`: those two are built (widths read from the files) and loaded strictly; the other three must
be there and hold the key families of their networks (they are read, not run). `.pth` files are read weights-only.
"""
from __future__ import annotations

import os

from ..errors import ColorizerLoadError
from .extractor_nets import MangaLineNet, manga_widths
from .screen_vae import decoder_from_state, generator_from_state
from .weights import load_into, read_state_dict

LINE_FILE = os.path.join("LE", "erika.pth")
_CYCLE = os.path.join("ScreenStyle", "color2manga", "color2manga_cycle_ganstft")
_SVAE = os.path.join("ScreenStyle", "ScreenVAE")
SCREEN_FILES = {
    "G_RGB2INTSCR": os.path.join(_CYCLE, "latest_net_G_RGB2INTSCR.pth"),
    "dec": os.path.join(_SVAE, "latest_net_dec.pth"),
    "G_INTSCR2RGB": os.path.join(_CYCLE, "latest_net_G_INTSCR2RGB.pth"),
    "E": os.path.join(_CYCLE, "latest_net_E.pth"),
    "enc": os.path.join(_SVAE, "latest_net_enc.pth"),
}
# a key each unused file's network has (G_INTSCR2RGB: mapping net + adaIn; E: spectral-norm convs; enc: ResNet)
_UNUSED_MARKERS = {"G_INTSCR2RGB": ("mapping.func.0.weight", "model.down.1.weight_orig"),
                   "E": ("conv.0.weight_orig", "fc.0.weight_orig", "fcVar.0.weight_orig"),
                   "enc": ("model.1.weight",)}


def is_snapshot(path: str) -> bool:
    """A folder holding the decolorize files (the line model or the ScreenStyle nets)."""
    return os.path.isfile(os.path.join(path, LINE_FILE)) or os.path.isfile(os.path.join(path, SCREEN_FILES["dec"]))


def _file(root: str, rel: str) -> str:
    path = os.path.join(root, rel)
    if not os.path.isfile(path):
        raise ColorizerLoadError(f"ColorFlow decolorize: {rel} not found in {root} (the TencentARC/ColorFlow "
                                 "snapshot's LE/ and ScreenStyle/ folders go there unchanged)")
    return path


def _ready(net):
    return net.float().eval().requires_grad_(False)


def load_line_model(root: str):
    path = _file(root, LINE_FILE)
    sd = read_state_dict(path)
    try:
        net = MangaLineNet(manga_widths(sd))
    except KeyError as exc:
        raise ColorizerLoadError(f"{path}: {exc.args[0]}") from None
    return _ready(load_into(net, sd, source=path))


def load_screen_models(root: str) -> dict:
    """{"generator": ScreenGenerator, "decoder": ScreenDecoder} from the five ScreenStyle files."""
    paths = {name: _file(root, rel) for name, rel in SCREEN_FILES.items()}
    for name, markers in _UNUSED_MARKERS.items():
        sd = read_state_dict(paths[name])
        absent = [k for k in markers if k not in sd]
        if absent:
            raise ColorizerLoadError(f"{paths[name]}: not the ScreenStyle {name} network (no {', '.join(absent)})")
    nets = {}
    for key, name, build in (("generator", "G_RGB2INTSCR", generator_from_state),
                             ("decoder", "dec", decoder_from_state)):
        sd = read_state_dict(paths[name])
        try:
            net = build(sd)
        except KeyError as exc:
            raise ColorizerLoadError(f"{paths[name]}: not the ScreenStyle {name} network (no {exc.args[0]})") from None
        nets[key] = _ready(load_into(net, sd, source=paths[name]))
    return nets


def load_decolorize_models(root: str, style: str) -> dict:
    """The networks `style` needs, from a snapshot folder."""
    if style == "GrayImage(ScreenStyle)":
        return load_screen_models(root)
    return {"line": load_line_model(root)}

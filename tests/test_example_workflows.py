"""The shipped example workflows: generated from their one definition, consistent with the live nodes, served
by the host as workflow templates, with the official app's defaults."""
from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from colorize_diffusion.devtools import workflows as wf
from colorize_diffusion.devtools.colorflow_workflows import COLORFLOW_FAMILIES
from colorize_diffusion.devtools.graph import has_seed_control
from colorize_diffusion.devtools.model_files import REPOSITORY_NAMES
from server_fixture import PACK_DIR_NAME, REPO

EXAMPLES = REPO / "example_workflows"
API_DIR = REPO / "tests" / "workflows"
STEMS = list(wf.WORKFLOWS)
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _build_script():
    spec = importlib.util.spec_from_file_location("build_workflows", REPO / "scripts" / "build_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------ files vs generator
@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get_json("/object_info")


def test_shipped_files_equal_generator_output(object_info):
    """Generated from the live /object_info of a server (not from a hand-kept copy of the schemas)."""
    expected = _build_script().expected_files(thumbnails=False, info=object_info)
    assert set(expected) == {f"example_workflows/{s}.json" for s in STEMS} | {f"tests/workflows/{s}.api.json"
                                                                              for s in STEMS}
    stale = [rel for rel, data in expected.items() if not (REPO / rel).is_file() or (REPO / rel).read_bytes() != data]
    assert not stale, f"regenerate with `.venv/bin/python scripts/build_workflows.py`: {stale}"
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == sorted(STEMS), "a workflow not made by the generator"
    assert sorted(p.name for p in API_DIR.glob("*.json")) == sorted(f"{s}.api.json" for s in STEMS)


def test_generator_check_mode_passes():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_workflows.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("stem", STEMS)
def test_thumbnail_is_a_jpeg_drawing_of_the_graph(object_info, stem):
    path = EXAMPLES / f"{stem}.jpg"
    assert path.is_file(), f"{path} missing: run scripts/build_workflows.py"
    with Image.open(path) as img:
        assert img.format == "JPEG" and img.size == (640, 400)
    from colorize_diffusion.devtools import thumbnails
    fresh = np.asarray(Image.open(io.BytesIO(thumbnails.render(wf.build(stem), object_info))).convert("L"),
                       dtype=float)
    shipped = np.asarray(Image.open(path).convert("L"), dtype=float)
    diff = np.abs(fresh - shipped).mean()
    assert diff < 4, f"{path} is not the drawing of the current graph (mean difference {diff:.1f}); regenerate it"


# ------------------------------------------------------------------------------------------ graphs and defaults
ENCODERS = ("ColorizeDiffusionSplitAttention", "ColorizeDiffusionBackgroundEncoder", "ColorizeDiffusionStyleEncoder")


def _api(stem):
    api = json.loads((API_DIR / f"{stem}.api.json").read_text())
    by_type = {}
    for node in api.values():
        by_type.setdefault(node["class_type"], []).append(node["inputs"])
    return api, by_type


def test_each_mode_is_its_own_graph():
    """The workflows differ by the nodes they contain, not by a widget value — except ColorFlow's on one base,
    which differ by the released colorizer they load (sketch/ or shading/, each with its Decolorize style)."""
    import colorize_diffusion.devtools.colorflow_workflows as cf

    node_sets = {stem: (frozenset(n["type"] for n in json.loads((EXAMPLES / f"{stem}.json").read_text())["nodes"]),
                        cf.COLORIZERS.get(stem)) for stem in STEMS}
    assert len(set(node_sets.values())) == len(STEMS), node_sets


@pytest.mark.parametrize("stem", STEMS)
def test_the_wired_encoders_are_the_mode_and_the_defaults_are_official(stem):
    from colorize_diffusion.model_patches.colorize_diffusion.modes import official_mode

    api, by_type = _api(stem)
    spec = wf.WORKFLOWS[stem]
    if spec.family in COLORFLOW_FAMILIES:
        return _colorflow_defaults(spec, by_type)
    parts = official_mode(spec.mode, spec.family)
    wired = {t for t in ENCODERS if t in by_type}
    assert wired == {t for t, on in zip(ENCODERS, (parts.split, parts.background, parts.style)) if on}
    (guider,) = by_type["ColorizeDiffusionGuider"]
    assert (guider["reference_scale"], guider["sketch_scale"]) == (4.0, 1.0)
    (sched,) = by_type["BasicScheduler"]
    assert sched["steps"] == 20 and sched["denoise"] == 1.0
    (applied,) = by_type["ColorizeDiffusionApplySketch"]
    assert applied["sketch_strength"] == 1.0
    if parts.split:
        (split,) = by_type["ColorizeDiffusionSplitAttention"]
        assert split["threshold"] == 0.05 and split["merge_scale"] == 0.0
        assert split["foreground_enhance"] == parts.foreground
    if parts.background:
        (bg,) = by_type["ColorizeDiffusionBackgroundEncoder"]
        assert bg["reference_mask_threshold"] == 0.5 and bg["background_factor"] == 1.0
        # xlv2's background ReferenceNet reads the reference's mask even with a background picture; the advanced
        # graphs give it the reference with its character whitened (Background-only Reference) as the background
        assert ("background" in bg) == (spec.background or spec.advanced)
        assert ("reference_mask" in bg) == (not (spec.background or spec.advanced) or spec.family == "xlv2")
        if spec.advanced:
            encoded = api[bg["background"][0]]
            assert api[encoded["inputs"]["image"][0]]["class_type"] == "ColorizeDiffusionBackgroundOnlyReference"
    (ckpt,) = by_type["ColorizeDiffusionCheckpointLoader"]
    assert ckpt["ckpt_name"] == wf.CHECKPOINTS[spec.family]
    (clip,) = by_type["ColorizeDiffusionLoadOpenCLIPVision"]
    xl = spec.family in wf.XL_FAMILIES
    assert clip["clip_name"] == ("clip_vision_g.safetensors" if xl else "clip_vision_h.safetensors")
    assert ("ColorizeDiffusionLoadWDTagger" in by_type) == xl
    (prepare,) = [n for n in by_type["ColorizeDiffusionPrepareSketch"] if "transparency_mask" in n or spec.batch][:1]
    assert prepare["resampling"] == ("pillow" if xl else "tensor")
    if xl:   # the XL app's sampler and size
        (ksel,) = by_type["KSamplerSelect"]
        assert ksel["sampler_name"] == "dpmpp_3m_sde" and sched["scheduler"] == "exponential"
        assert prepare["size_base"] == 1024
    assert "VAELoader" not in by_type, "the official checkpoints contain their VAE"
    assert not {"LoadImage", "ColorizeDiffusionLoadImage", "LoadImageDataSetFromFolder"} & set(by_type), \
        "the shipped workflows read the pack's own pictures in place, nothing from input/"
    pictures = {v["picture"] for v in by_type.get("ColorizeDiffusionExamplePicture", [])}
    if spec.batch:
        (folder,) = by_type["ColorizeDiffusionExamplePictureFolder"]
        assert list((REPO / "example_workflows" / "input" / folder["folder"]).glob("*.png"))
    assert (wf.EXAMPLE_REFERENCE in pictures) != spec.chapter and (wf.EXAMPLE_SKETCH in pictures) != spec.batch
    if spec.chapter:     # the references come from the pool the pack ships, retrieved per page
        (pool,) = by_type["ColorizeDiffusionReferencePool"]
        assert list((REPO / "example_workflows" / "input" / pool["folder"]).glob("*.png"))
        assert "ColorizeDiffusionColourUnderPage" in by_type
    for name in pictures:      # the pack ships every picture its workflows load
        assert (REPO / "example_workflows" / "input" / name).is_file(), name


def _colorflow_defaults(spec, by_type):
    """ColorFlow's app: prompt "manga" and the empty negative, guidance 4.5 / 7.5, 10 steps, seed 0, top-3
    retrieval from the shipped pool, the released folder of the family, the official batch-statistics GSRP."""
    import colorize_diffusion.devtools.colorflow_workflows as cf

    family = spec.family
    assert sorted(n["text"] for n in by_type["CLIPTextEncode"]) == ["", "manga"]
    (guider,) = by_type["CFGGuider"]
    assert guider["cfg"] == cf.GUIDANCE[family]
    (sampling,) = by_type["ColorizeDiffusionColorFlowSampling"]
    (noise,) = by_type["RandomNoise"]
    assert sampling["steps"] == 10 and noise["noise_seed"] == 0
    (colorizer,) = by_type["ColorizeDiffusionLoadColorFlow"]
    (sr,) = by_type["ColorizeDiffusionLoadColorFlowSuperResolution"]
    assert colorizer["colorizer"] == sr["folder"] == cf.COLORIZERS[spec.stem][0]
    (decolorize,) = by_type["ColorizeDiffusionColorFlowDecolorize"]
    assert decolorize["style"] == cf.COLORIZERS[spec.stem][1] and decolorize["resolution"] == "512x800"
    (gsrp,) = by_type["ColorizeDiffusionColorFlowSuperResolution"]
    assert gsrp["batchnorm"] == "picture statistics (official)"
    (retrieve,) = by_type["ColorizeDiffusionRetrieveReferences"]
    (pool,) = by_type["ColorizeDiffusionReferencePool"]
    assert retrieve["top_k"] == 3 and pool["resolution"] == "512x800"
    assert list((REPO / "example_workflows" / "input" / pool["folder"]).glob("*.png"))
    loaders = {"pixart": {"UNETLoader", "CLIPLoader", "VAELoader"}, "sd15": {"CheckpointLoaderSimple"}}[family]
    assert loaders <= set(by_type) and "ColorizeDiffusionLoadDiffusersBase" not in by_type


@pytest.mark.parametrize("stem", STEMS)
def test_newcomer_reads_groups_a_note_and_model_downloads(stem):
    ui = json.loads((EXAMPLES / f"{stem}.json").read_text())
    titles = [g["title"] for g in ui["groups"]]
    assert titles == [t for t in wf.GROUPS if t in titles] and {"Inputs", "Models", "Encoders", "Sampler"} <= set(titles)
    lefts = [g["bounding"][0] for g in ui["groups"]]
    assert lefts == sorted(lefts), "groups run left to right"
    for node in ui["nodes"]:       # every node sits inside one group
        x, y = node["pos"]
        assert any(g["bounding"][0] <= x and g["bounding"][1] <= y <= g["bounding"][1] + g["bounding"][3]
                   for g in ui["groups"]), node["type"]
    (note,) = [n for n in ui["nodes"] if n["type"] == "Note"]
    text = note["widgets_values"][0]
    needed = {m["name"]: m for m in ui["models"]}
    for name, m in needed.items():
        # saved under `name`; some are called otherwise in their repository (the tagger's model.safetensors)
        source = REPOSITORY_NAMES.get(name, name)
        assert name in text and m["url"].startswith("https://huggingface.co/") and m["url"].endswith(source)
    if wf.WORKFLOWS[stem].family in COLORFLOW_FAMILIES:       # ComfyUI's loaders, every file with its download
        loaders = [n for n in ui["nodes"] if n["type"] in ("UNETLoader", "CLIPLoader", "VAELoader",
                                                            "CheckpointLoaderSimple")]
        assert loaders and all(n["properties"]["models"][0]["name"] == n["widgets_values"][0] for n in loaders)
        assert "models/colorflow/" in text
    elif wf.WORKFLOWS[stem].family in wf.XL_FAMILIES:      # names of the XL release not verified: no download link
        (ckpt,) = [n for n in ui["nodes"] if n["type"] == "ColorizeDiffusionCheckpointLoader"]      # names of the XL release not verified: no download link
        assert "models" not in ckpt["properties"] and "tellurion/ColorizeDiffusionXL" in text
    else:
        (ckpt,) = [n for n in ui["nodes"] if n["type"] == "ColorizeDiffusionCheckpointLoader"]
        assert ckpt["properties"]["models"][0]["name"] == ckpt["widgets_values"][0]
        assert ckpt["properties"]["models"][0]["directory"] == "colorizediffusion"
    # opens with every group, its title and the note on a 1600x1000 window, below the frontends' top bars
    ds = ui["extra"]["ds"]
    boxes = [g["bounding"] for g in ui["groups"]] + [note["pos"] + note["size"]]
    screen = [[(x + ds["offset"][0]) * ds["scale"], (y + ds["offset"][1]) * ds["scale"],
               (x + w + ds["offset"][0]) * ds["scale"], (y + h + ds["offset"][1]) * ds["scale"]] for x, y, w, h in boxes]
    assert all(b[0] >= 0 and b[1] >= 60 and b[2] <= 1600 and b[3] <= 1000 for b in screen), screen


def test_readme_lists_every_file_of_every_workflow():
    """README's model table is made from the shipped workflows' `models` lists (what the frontend offers to
    download): every file with its folder and download, and the files no `models` entry can name (XL checkpoints,
    ColorFlow's folders); every loader widget's file of every workflow is in it."""
    from colorize_diffusion.devtools import model_files as mf

    readme = (REPO / "README.md").read_text()
    block = readme[readme.index(mf.README_BEGIN):readme.index(mf.README_END) + len(mf.README_END)]
    models = {stem: json.loads((EXAMPLES / f"{stem}.json").read_text())["models"] for stem in STEMS}
    assert block == mf.readme_table(models, wf.workflow_groups()), \
        "README's model table is stale: run `.venv/bin/python scripts/build_workflows.py`"
    for stem in STEMS:
        graph = wf.build(stem)
        named = {v for n in graph.nodes for (t, w) in wf.MODEL_WIDGETS if t == n.type for v in [n.widgets[w]]}
        named |= {f for t, f in wf.NETWORK_FILES.items() if t in graph.node_types}
        xl_checkpoints = {wf.CHECKPOINTS[f] for f in wf.XL_FAMILIES}
        for name in named - xl_checkpoints:
            assert f"| `{name}`" in block and name in {m["name"] for m in models[stem]}, (stem, name)
    for _, folder, url, _ in mf.OTHER_FILES:
        assert url in block and f"`models/{folder}/`" in block


# The registered nodes no shipped workflow uses, and why
NOT_SHIPPED = {"ColorizeDiffusionLoadDiffusersBase": (
    "ColorFlow's shipped graphs load their bases with ComfyUI's own loaders, from the single files ComfyUI users "
    "hold; Load Diffusers Base is for a diffusers-layout folder (the tests run ColorFlow's graphs with it on the "
    "tiny bases)"),
    "ColorizeDiffusionLoadImage": (
    "the shipped graphs read the pack's own pictures in place (Example Picture), since nothing is copied into "
    "input/; Load Image is what the user and the client put in their place for pictures of input/ (the client's "
    "tests run the shipped graphs with it)")}


def test_every_node_is_in_a_shipped_workflow():
    """Each node the pack registers appears in some shipped workflow, so a user meets every node in a working graph
    (and the browser and workflow tests load and run it)."""
    from colorize_diffusion.nodes import node_classes

    shipped = {n["type"] for stem in STEMS for n in json.loads((EXAMPLES / f"{stem}.json").read_text())["nodes"]}
    registered = set(node_classes())
    assert set(NOT_SHIPPED) <= registered
    assert sorted(registered - shipped - set(NOT_SHIPPED)) == []
    assert not set(NOT_SHIPPED) & shipped, "allowed to be missing, but shipped: drop it from NOT_SHIPPED"


# ------------------------------------------------------------------------------------------ vs the live nodes
def _is_widget(spec) -> bool:
    typ = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return (isinstance(typ, list) or typ in WIDGET_TYPES) and not opts.get("forceInput")


def _input_spec(info: dict, name: str):
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            return info["input"][section][name], section == "optional"
    raise KeyError(name)


def _check_value(node_type, name, value, spec):
    typ = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    options = typ if isinstance(typ, list) else opts.get("options")
    if (node_type, name) in wf.FILE_WIDGETS:
        assert isinstance(value, str) and value, f"{node_type}.{name}: file name expected"
        return
    if options is not None:
        assert value in options, f"{node_type}.{name} = {value!r} not in {options}"
    elif typ == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), f"{node_type}.{name} = {value!r} not INT"
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{node_type}.{name} = {value} out of range"
    elif typ == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{node_type}.{name} = {value} out of range"
    elif typ == "BOOLEAN":
        assert isinstance(value, bool)
    elif typ == "STRING":
        assert isinstance(value, str)


@pytest.mark.parametrize("stem", STEMS)
def test_ui_widget_values_follow_input_order(object_info, stem):
    """widgets_values = the widgets in /object_info input_order (+ the frontend's extra values), each valid."""
    ui = json.loads((EXAMPLES / f"{stem}.json").read_text())
    assert ui["version"] == 0.4 and ui["last_node_id"] == max(n["id"] for n in ui["nodes"])
    for node in ui["nodes"]:
        if node["type"] == "Note":
            continue
        info = object_info[node["type"]]
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        widgets = [n for n in order if _is_widget(_input_spec(info, n)[0])]
        expected_len = len(widgets)
        values = list(node["widgets_values"])
        extras = []
        for i, name in enumerate(widgets):
            spec = _input_spec(info, name)[0]
            _check_value(node["type"], name, values[i + len(extras)], spec)
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if has_seed_control(name, "COMBO" if isinstance(spec[0], list) else spec[0], opts):
                extras.append(values[i + len(extras) + 1])
                assert extras[-1] in ("fixed", "increment", "decrement", "randomize")
            if opts.get("image_upload"):
                assert values[-1] == "image"
                expected_len += 1
        assert len(values) == expected_len + len(extras), f"{node['type']}: {values}"
        # the node's inputs: sockets first (optional ones shaped 7), then one per widget, as the frontend saves
        sockets = [n for n in order if not _is_widget(_input_spec(info, n)[0])]
        names = [i["name"] for i in node["inputs"]]
        assert names[:len(sockets)] == sockets and names[len(sockets):len(sockets) + len(widgets)] == widgets
        assert [o["type"] for o in node["outputs"]] == info["output"]


@pytest.mark.parametrize("stem", STEMS)
def test_ui_links_are_consistent(object_info, stem):
    ui = json.loads((EXAMPLES / f"{stem}.json").read_text())
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_link_id"] == len(ui["links"])
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert link_id in out["links"] and inp["link"] == link_id
        assert inp["type"] == typ and out["type"] in typ.split(",")
    # every required socket is connected
    for node in ui["nodes"]:
        if node["type"] == "Note":
            continue
        info = object_info[node["type"]]
        for name in info["input_order"].get("required", []):
            if not _is_widget(_input_spec(info, name)[0]):
                assert next(i for i in node["inputs"] if i["name"] == name)["link"] is not None, (node["type"], name)


@pytest.mark.parametrize("stem", STEMS)
def test_api_copy_matches_ui(object_info, stem):
    """The API copy is the UI graph in API form: same nodes, widget values and connections."""
    ui = json.loads((EXAMPLES / f"{stem}.json").read_text())
    api = json.loads((API_DIR / f"{stem}.api.json").read_text())
    links = {l[0]: l for l in ui["links"]}
    assert set(api) == {str(n["id"]) for n in ui["nodes"] if n["type"] != "Note"}
    for node in ui["nodes"]:
        if node["type"] == "Note":
            continue
        a = api[str(node["id"])]
        assert a["class_type"] == node["type"]
        schema = wf.NodeSchema.of(object_info, node["type"])
        values = [v for v in node["widgets_values"]]
        if schema.upload:
            values = values[:-1]
        if schema.seed_widget:
            del values[[w for w, _ in schema.widgets].index(schema.seed_widget) + 1]
        assert [a["inputs"][w] for w, _ in schema.widgets] == values
        for inp in node["inputs"]:
            if "widget" in inp:
                continue
            if inp["link"] is None:
                assert inp["name"] not in a["inputs"]
            else:
                _, src, slot, _, _, _ = links[inp["link"]]
                assert a["inputs"][inp["name"]] == [str(src), slot]


# ------------------------------------------------------------------------------------------ template browser
def test_host_offers_the_workflows_as_templates(comfy_server):
    templates = comfy_server.get_json("/workflow_templates")
    assert sorted(templates.get(PACK_DIR_NAME, [])) == sorted(STEMS)
    for stem in STEMS:
        status, body = comfy_server.get(f"/api/workflow_templates/{PACK_DIR_NAME}/{stem}.json")
        assert status == 200 and body == (EXAMPLES / f"{stem}.json").read_bytes()
        status, body = comfy_server.get(f"/api/workflow_templates/{PACK_DIR_NAME}/{stem}.jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff", f"thumbnail of {stem} not served"

"""The pack inside the real ComfyUI host (0.3.75, CPU): the host's own custom-node loader, the registry
metadata the host parses, and a server started by scripts/run.sh (frontend, /object_info, model folder)."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import logging
import re
import sys
from pathlib import Path

import pytest

from server_fixture import COMFYUI_DIR, PACK_DIR_NAME, REPO, golden_roots

PACK_LINK = COMFYUI_DIR / "custom_nodes" / PACK_DIR_NAME
HOST_MODULE = f"custom_nodes.{PACK_DIR_NAME}"


def pack_mappings() -> tuple[dict, dict]:
    """node id -> class and node id -> title, from the pack's comfy_entrypoint (what ComfyUI calls)."""
    import colorize_diffusion

    extension = asyncio.run(colorize_diffusion.comfy_entrypoint())
    classes = asyncio.run(extension.get_node_list())
    schemas = {cls: cls.GET_SCHEMA() for cls in classes}
    return {s.node_id: cls for cls, s in schemas.items()}, {s.node_id: s.display_name for s in schemas.values()}


def _sockets(info: dict) -> dict:
    """(section, name) -> socket type of an /object_info entry (combo options left out: they list folders)."""
    out = {}
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            out[(section, name)] = spec[0] if isinstance(spec[0], str) else "COMBO"
    return out


def test_environment_links():
    """scripts/setup.sh linked the pack into the host and made `import colorize_diffusion` work."""
    assert PACK_LINK.exists(), f"{PACK_LINK} missing: run scripts/setup.sh"
    assert PACK_LINK.resolve() == REPO
    import colorize_diffusion
    assert Path(colorize_diffusion.__file__).resolve().parent == REPO


def test_registry_metadata_parsed_by_host():
    """pyproject.toml as ComfyUI itself reads it (comfy_config), and consistent with requirements.txt."""
    from comfy_config import config_parser

    cfg = config_parser.extract_node_configuration(str(REPO))
    assert cfg is not None
    assert cfg.project.name == "colorizediffusion"
    assert "comfyui" not in cfg.project.name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", cfg.project.version)
    assert cfg.project.supported_comfyui_version == ">=0.3.75"
    assert cfg.project.license.file == "LICENSE" and (REPO / "LICENSE").is_file()
    assert cfg.tool_comfy.publisher_id == "colorizediffusion"
    assert cfg.tool_comfy.display_name == "ColorizeDiffusion"
    requirements = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
                    if ln.strip() and not ln.strip().startswith("#")]
    assert sorted(cfg.project.dependencies) == sorted(requirements)
    assert not any(re.match(r"torch\b|torchvision\b", r) for r in requirements), "never pin users' torch"


def test_pack_loads_through_host_loader(caplog):
    """nodes.load_custom_node on custom_nodes/ComfyUI-ColorizeDiffusion registers every pack node."""
    import nodes

    saved = (dict(nodes.NODE_CLASS_MAPPINGS), dict(nodes.NODE_DISPLAY_NAME_MAPPINGS),
             dict(nodes.LOADED_MODULE_DIRS), dict(nodes.EXTENSION_WEB_DIRS), set(sys.modules))
    try:
        with caplog.at_level(logging.WARNING):
            ok = asyncio.run(nodes.load_custom_node(str(PACK_LINK), module_parent="custom_nodes"))
        assert ok, f"ComfyUI could not load the pack:\n{caplog.text}"
        assert "Unable to parse pyproject.toml" not in caplog.text, caplog.text

        expected, display = pack_mappings()
        assert expected, "the pack's comfy_entrypoint lists no node"
        for name, cls in expected.items():
            assert name in nodes.NODE_CLASS_MAPPINGS, f"{name} not registered by the host loader"
            host_cls = nodes.NODE_CLASS_MAPPINGS[name]
            assert host_cls.__qualname__ == cls.__qualname__
            assert host_cls.CATEGORY == cls.CATEGORY
            assert host_cls.RELATIVE_PYTHON_MODULE == HOST_MODULE
        for name, title in display.items():
            assert nodes.NODE_DISPLAY_NAME_MAPPINGS.get(name) == title
        assert Path(nodes.LOADED_MODULE_DIRS[PACK_DIR_NAME]).resolve() == REPO
    finally:
        # Leave the host's registries as they were, so later in-process tests see no second copy of the pack.
        for live, old in zip((nodes.NODE_CLASS_MAPPINGS, nodes.NODE_DISPLAY_NAME_MAPPINGS,
                              nodes.LOADED_MODULE_DIRS, nodes.EXTENSION_WEB_DIRS), saved):
            live.clear()
            live.update(old)
        for mod in set(sys.modules) - saved[4]:
            if mod.startswith(str(PACK_LINK).replace(".", "_x_")):
                del sys.modules[mod]


# --------------------------------------------------------------------------------------------------
# Through HTTP, on the server scripts/run.sh started (the comfy_server fixture)
# --------------------------------------------------------------------------------------------------

def test_run_command_serves_frontend(comfy_server):
    """`/` is the index.html of the pinned comfyui-frontend-package (not a stub frontend)."""
    spec = importlib.util.find_spec("comfyui_frontend_package")
    assert spec is not None, "comfyui-frontend-package is not installed: run scripts/setup.sh"
    index = Path(spec.origin).parent / "static" / "index.html"
    status, body = comfy_server.get("/")
    assert status == 200
    assert body == index.read_bytes()


def test_run_command_lists_pack_nodes(comfy_server):
    info = comfy_server.get_json("/object_info")
    expected, display = pack_mappings()
    assert expected, "the pack's comfy_entrypoint lists no node"
    for name, cls in expected.items():
        assert name in info, f"{name} missing from /object_info"
        served, schema = info[name], cls.GET_NODE_INFO_V1()
        assert served["category"] == cls.CATEGORY
        assert served["python_module"] == HOST_MODULE
        assert served["display_name"] == display[name]
        # the node graph contract: what the frontend and API clients see is the schema, socket for socket
        assert _sockets(served) == _sockets(schema), name
        assert served["input_order"] == schema["input_order"], name
        assert (served["output"], served["output_name"]) == (list(schema["output"]), list(schema["output_name"]))
        assert served["description"] and all(t for t in served["output_tooltips"] if t is not None)
    # only this pack was loaded as a custom node (--disable-all-custom-nodes + whitelist)
    modules = {str(v.get("python_module", "")) for v in info.values()}
    assert {m for m in modules if m.startswith("custom_nodes.")} == {HOST_MODULE}


def test_run_command_loaded_pack_cleanly(comfy_server):
    log = comfy_server.log()
    lines = [ln for ln in log.splitlines() if PACK_DIR_NAME in ln and "seconds" in ln]
    assert lines, f"the server did not report importing {PACK_DIR_NAME}:\n{log[-3000:]}"
    assert not any("IMPORT FAILED" in ln for ln in lines), "\n".join(lines)
    bad = [ln for ln in log.splitlines() if "Cannot import" in ln and PACK_DIR_NAME in ln]
    assert not bad, "\n".join(bad)


def test_embedded_host_starts_without_tracebacks_or_error_banners(comfy_server):
    """The managed host of scripts/setup.sh (not a COMFYUI_DIR of the user's): a healthy start of the run command
    logs no traceback, no IMPORT FAILED and no ERROR banner (core nodes whose dependencies exist are installed, the
    audio nodes without a torchaudio build are left out cleanly)."""
    if os.environ.get("COMFYUI_DIR"):
        pytest.skip("a ComfyUI tree of the user's: its optional dependencies are its own business")
    log = comfy_server.log()
    start = log.split("\nTo see the GUI go to:", 1)[0]      # the start-up (later prompts of other tests may fail)
    assert len(start) < len(log), "the server never said it was ready"
    bad = [ln for ln in start.splitlines() if "Traceback" in ln or "IMPORT FAILED" in ln or ln.startswith("ERROR")
           or "Cannot import" in ln]
    assert not bad, "\n".join(bad) + "\n" + log[-3000:]


def test_run_command_lists_colorizediffusion_models(comfy_server):
    """Files in <base>/models/colorizediffusion are visible under the folder key `colorizediffusion`."""
    linked = sorted(p.name for p in (comfy_server.base_dir / "models" / "colorizediffusion").glob("*.safetensors"))
    assert linked, f"no golden models linked from {[str(r) for r in golden_roots()]}"
    status, body = comfy_server.get("/models/colorizediffusion")
    assert status == 200, "the pack does not register the model folder key 'colorizediffusion' in folder_paths"
    listed = json.loads(body)
    assert set(linked) <= set(listed), listed


def test_the_server_runs_on_the_pass_host(comfy_server):
    """The served tests see the pass's host: in the current-host pass the server runs under the emulation (entered
    before the pack loads), in the pinned pass it is scripts/run.sh with nothing changed."""
    import current_host_server
    import host_emulation

    log = comfy_server.log()
    assert (current_host_server.STARTED in log) == host_emulation.session_emulated(), log[-3000:]
    if host_emulation.session_emulated():
        assert log.index(current_host_server.STARTED) < log.index("Import times for custom nodes")

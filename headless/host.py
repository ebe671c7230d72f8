"""Put a ComfyUI host on ``sys.path`` and initialise it in this process (comfyui-host.md §6.2, §6.6).

Which ComfyUI: ``comfyui_dir`` argument > ``COMFYUI_DIR`` > ``<repo>/.host/ComfyUI`` (the tree
``scripts/setup.sh`` extracts) > the ComfyUI this pack is installed in (``<ComfyUI>/custom_nodes/<pack>``).
Idempotent: a second call (or a process where the tests already set the host up) only checks.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

log = logging.getLogger("ColorizeDiffusion.headless")


class HostError(RuntimeError):
    """ComfyUI could not be found or initialised."""


@dataclass
class Host:
    comfyui_dir: Path
    cpu: bool


_HOST: Host | None = None


def candidate_dirs(comfyui_dir: str | os.PathLike | None = None) -> list[Path]:
    out = []
    if comfyui_dir:
        out.append(Path(comfyui_dir))
    elif os.environ.get("COMFYUI_DIR"):
        out.append(Path(os.environ["COMFYUI_DIR"]))
    else:
        out.append(REPO / ".host" / "ComfyUI")
        for pack in (REPO, Path(os.path.abspath(__file__)).parents[1]):   # resolved, and as linked
            if pack.parent.name == "custom_nodes" and pack.parent.parent not in out:
                out.append(pack.parent.parent)                # installed as <ComfyUI>/custom_nodes/<pack>
    return out


def find_comfyui(comfyui_dir: str | os.PathLike | None = None) -> Path:
    tried = candidate_dirs(comfyui_dir)
    for d in tried:
        if (d / "comfy").is_dir() and (d / "execution.py").is_file() and (d / "nodes.py").is_file():
            return d.resolve()
    raise HostError(
        "no ComfyUI found (looked in: " + ", ".join(str(d) for d in tried) + "). Run `make setup` "
        "(scripts/setup.sh) to extract the embedded host into .host/ComfyUI, or pass --comfyui-dir / set "
        "COMFYUI_DIR to a ComfyUI folder (the one containing main.py, comfy/ and nodes.py).")


def _running_host_dir() -> Path | None:
    """The ComfyUI already imported in this process (tests, or running inside ComfyUI), if any."""
    mod = sys.modules.get("folder_paths") or sys.modules.get("comfy")
    if mod is None or not getattr(mod, "__file__", None):
        return None
    p = Path(mod.__file__).resolve().parent
    return p.parent if p.name == "comfy" else p


def accelerator_present() -> bool:
    """Whether torch sees any device ComfyUI's model_management can use besides the CPU (the same checks)."""
    import importlib.util

    import torch
    checks = (lambda: torch.cuda.is_available(),
              lambda: torch.backends.mps.is_available(),
              lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
              lambda: importlib.util.find_spec("torch_npu") is not None,
              lambda: importlib.util.find_spec("torch_mlu") is not None)
    for check in checks:
        try:
            if check():
                return True
        except Exception as exc:  # noqa: BLE001 - a backend that cannot even be asked is not there
            log.debug("device check failed: %s", exc)
    return False


def prepare(comfyui_dir: str | os.PathLike | None = None, *, cpu: bool | None = None,
            base_directory: str | os.PathLike | None = None) -> Path:
    """The cheap half of :func:`setup`: ComfyUI on sys.path, its arguments, ``folder_paths`` with
    extra_model_paths.yaml and this pack's model folders, so that weight files can be looked up before
    anything heavy is imported. Returns the ComfyUI folder."""
    running = _running_host_dir()
    root = running or find_comfyui(comfyui_dir)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

    from comfy.cli_args import args  # parse_args([]) unless ComfyUI's main enabled argument parsing

    if "comfy.model_management" not in sys.modules:
        # --cpu forces the CPU; otherwise ComfyUI chooses the device itself (CUDA/ROCm, MPS, XPU, NPU, MLU,
        # DirectML), and only a machine where none is present gets --cpu (ComfyUI would fail to start there)
        if cpu or (cpu is None and not args.cpu and args.directml is None and not accelerator_present()):
            args.cpu = True
        if base_directory is not None:
            args.base_directory = str(Path(base_directory).resolve())
        args.disable_auto_launch = True
    elif base_directory is not None and "folder_paths" in sys.modules:
        import folder_paths
        if Path(folder_paths.base_path).resolve() != Path(base_directory).resolve():
            raise HostError("--base-directory must be set before ComfyUI is imported in this process")

    import utils.extra_config  # before comfy/ lands on sys.path (comfyui-host.md §6.2)

    import folder_paths

    if running is None and not getattr(prepare, "_extra_paths_loaded", False):
        # extra_model_paths.yaml next to main.py, as ComfyUI's main.py reads it (shared model folders)
        yaml_path = root / "extra_model_paths.yaml"
        if yaml_path.is_file():
            utils.extra_config.load_extra_path_config(str(yaml_path))
        prepare._extra_paths_loaded = True
    from .. import model_folders

    model_folders.register()
    return root


def setup(comfyui_dir: str | os.PathLike | None = None, *, cpu: bool | None = None,
          base_directory: str | os.PathLike | None = None) -> Host:
    """Make ``import comfy, nodes, execution`` work, choose the device, load the core and the pack's nodes."""
    global _HOST
    if _HOST is not None:
        return _HOST
    root = prepare(comfyui_dir, cpu=cpu, base_directory=base_directory)
    import folder_paths
    import nodes

    if "SamplerCustomAdvanced" not in nodes.NODE_CLASS_MAPPINGS:   # core extras (comfy_extras/*) not loaded yet
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    from ..nodes import display_names, node_classes

    for name, cls in node_classes().items():          # what ComfyUI's loader does with comfy_entrypoint
        nodes.NODE_CLASS_MAPPINGS.setdefault(name, cls)
    for name, title in display_names().items():
        nodes.NODE_DISPLAY_NAME_MAPPINGS.setdefault(name, title)
    import comfy.model_management as mm

    _HOST = Host(root, mm.cpu_state == mm.CPUState.CPU)
    log.debug("ComfyUI at %s, models in %s, cpu=%s", root, folder_paths.models_dir, _HOST.cpu)
    return _HOST


def object_info(node_types=None) -> dict:
    """`/object_info` entries of the host's nodes (all, or `node_types`), computed as ComfyUI's server does;
    needs :func:`setup` first."""
    import nodes
    from comfy_api.internal import _ComfyNodeInternal

    out = {}
    for name in node_types or nodes.NODE_CLASS_MAPPINGS:
        cls = nodes.NODE_CLASS_MAPPINGS[name]
        if issubclass(cls, _ComfyNodeInternal):
            out[name] = cls.GET_NODE_INFO_V1()
            continue
        inputs = cls.INPUT_TYPES()
        out[name] = {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
                     "output": list(cls.RETURN_TYPES),
                     "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
                     "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
                     "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(name, name)}
    return out

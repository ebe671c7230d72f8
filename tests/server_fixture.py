"""A real ComfyUI server with this pack, started once per test session (``scripts/run.sh``; in the current-host pass
ComfyUI's main.py under the emulation, ``tests/current_host_server.py``).

Use the ``comfy_server`` fixture (re-exported by ``conftest.py``)::

    def test_something(comfy_server):
        info = comfy_server.get_json("/object_info")
        status, body = comfy_server.get("/")
        reply = comfy_server.post_json("/prompt", {"prompt": api_json, "client_id": "t"})
        comfy_server.base_dir / "models" / "colorizediffusion"   # the server's model folder

The server runs on CPU (``--cpu``) on 127.0.0.1 and a free port, with a fresh ``--base-directory`` (so
``models/``, ``custom_nodes/``, ``input/``, ``output/``, ``temp/``, ``user/`` all live in a temporary folder),
only this pack loaded (``--disable-all-custom-nodes --whitelist-custom-nodes ComfyUI-ColorizeDiffusion``),
no API nodes and an in-memory database. Before the start, the tiny golden checkpoints
(``<golden root>/models/*.safetensors``) are linked into ``<base>/models/colorizediffusion/`` and the tiny
CLIP towers (``<golden root>/clip/*.safetensors``) into ``<base>/models/clip_vision/``; files a test adds there
later are picked up too (ComfyUI's listing is mtime-cached per folder). The server's output is in
``comfy_server.log_path``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

import host_emulation
from shared_data import GOLDEN, GOLDEN_COLORFLOW, GOLDEN_COLORFLOW_DECOLORIZE, GOLDEN_XL

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "scripts" / "run.sh"
CURRENT_HOST_SERVER = Path(__file__).resolve().parent / "current_host_server.py"
PACK_DIR_NAME = "ComfyUI-ColorizeDiffusion"
COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR") or REPO / ".host" / "ComfyUI").resolve()
READY_TIMEOUT_S = float(os.environ.get("COLORIZEDIFFUSION_SERVER_TIMEOUT", "240"))




def golden_roots() -> list[Path]:
    """The public golden sets with models (``../shared/golden``, ``golden_xl``, ``golden_colorflow``,
    ``golden_colorflow_decolorize``) and every root in COLORIZEDIFFUSION_GOLDEN_DIRS."""
    roots = [GOLDEN, GOLDEN_XL, GOLDEN_COLORFLOW, GOLDEN_COLORFLOW_DECOLORIZE]
    roots += [Path(p) for p in os.environ.get("COLORIZEDIFFUSION_GOLDEN_DIRS", "").split(os.pathsep) if p]
    return [r for r in roots if r.is_dir()]


class ComfyServer(NamedTuple):
    url: str          # e.g. "http://127.0.0.1:43123"
    base_dir: Path    # the server's --base-directory
    log_path: Path    # its stdout + stderr
    process: subprocess.Popen

    def get(self, path: str, timeout: float = 60) -> tuple[int, bytes]:
        return _request(self.url + path, None, timeout)

    def get_json(self, path: str, timeout: float = 60):
        status, body = self.get(path, timeout)
        assert status == 200, f"GET {path} -> HTTP {status}: {body[:500]!r}"
        return json.loads(body)

    def post_json(self, path: str, payload, timeout: float = 60) -> tuple[int, object]:
        status, body = _request(self.url + path, json.dumps(payload).encode(), timeout)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _request(url: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link(src: Path, dest: Path) -> None:
    if not dest.exists() and not dest.is_symlink():
        dest.symlink_to(src)


def prepare_base_dir(base: Path) -> Path:
    """Lay out a --base-directory: the pack linked into custom_nodes, tiny golden models linked in."""
    for sub in ("custom_nodes", "models/colorizediffusion/preprocessors", "models/clip_vision",
                "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _link(REPO, base / "custom_nodes" / PACK_DIR_NAME)
    for root in golden_roots():
        link_golden_models(root, base / "models")
    return base


def link_golden_models(root: Path, models: Path) -> None:
    """A golden root's tiny models into a ComfyUI models folder: checkpoints (with the `<name>.json` inference config
    the loader reads head sizes from, written from an XL root's tiny-configs.json), CLIP towers and their configs,
    WD taggers."""
    dest = models / "colorizediffusion"
    (dest / "tagger").mkdir(parents=True, exist_ok=True)
    (models / "clip_vision").mkdir(parents=True, exist_ok=True)
    for f in sorted((root / "models").glob("*.safetensors")):
        _link(f, dest / f.name)
    configs = root / "models" / "tiny-configs.json"
    if configs.is_file():
        for name, entry in json.loads(configs.read_text()).items():
            side = dest / (Path(name).stem + ".json")
            if not side.exists():
                side.write_text(json.dumps(entry["effective_config"]))
    for f in sorted((root / "clip").glob("*.safetensors")) + sorted((root / "clip").glob("*.json")):
        _link(f, models / "clip_vision" / f.name)      # towers and their configs
    for f in sorted((root / "tagger").glob("*.safetensors")):
        _link(f, dest / "tagger" / f.name)
    # ColorFlow roots: the released-layout folders into models/colorflow, the diffusers-layout bases (a folder with a
    # transformer/ or unet/) into models/diffusers
    for folder in sorted((root / "models" / "colorflow").glob("*/")):
        (models / "colorflow").mkdir(exist_ok=True)
        _link(folder, models / "colorflow" / folder.name)
    if (root / "models" / "colorflow" / "sketch").is_dir():   # shading/ has sketch/'s format: the tiny sketch/
        (models / "colorflow").mkdir(exist_ok=True)            # stands in for it
        _link(root / "models" / "colorflow" / "sketch", models / "colorflow" / "shading")
    for sub in ("LE", "ScreenStyle"):               # the decolorize networks, in the snapshot layout
        if (root / "models" / sub).is_dir():
            (models / "colorflow").mkdir(exist_ok=True)
            _link(root / "models" / sub, models / "colorflow" / sub)
    for folder in sorted((root / "models").glob("*/")):
        if (folder / "transformer").is_dir() or (folder / "unet").is_dir():
            (models / "diffusers").mkdir(exist_ok=True)
            _link(folder, models / "diffusers" / folder.name)


def server_command(port: int) -> list[str]:
    """scripts/run.sh on the pinned host; in the current-host pass, ComfyUI's main.py under the emulation
    (tests/current_host_server.py), on the same address."""
    if host_emulation.session_emulated():
        return [sys.executable, str(CURRENT_HOST_SERVER), "--listen", "127.0.0.1", "--port", str(port)]
    return ["bash", str(RUN_SH)]


def start_server(base: Path, port: int, extra_args: tuple[str, ...] = ()) -> ComfyServer:
    """Start ComfyUI (server_command) in its own process group; wait for readiness."""
    log_path = base / "comfyui.log"
    cmd = [*server_command(port), "--cpu", "--base-directory", str(base),
           "--database-url", "sqlite:///:memory:",
           "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR_NAME,
           "--disable-api-nodes", "--disable-auto-launch", *extra_args]
    env = dict(os.environ, COLORIZEDIFFUSION_PORT=str(port), COLORIZEDIFFUSION_LISTEN="127.0.0.1",
               OMP_NUM_THREADS="1",  # the test process shares the 2 CPU cores with this server
               COMFYUI_DIR=str(COMFYUI_DIR))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = ComfyServer(f"http://127.0.0.1:{port}", base, log_path, proc)
    try:
        _wait_ready(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def _wait_ready(server: ComfyServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {server.process.returncode} before it was ready; "
                               f"log tail:\n{server.log()[-4000:]}")
        try:
            status, _ = server.get("/system_stats", timeout=5)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"ComfyUI not ready after {READY_TIMEOUT_S:.0f} s; log tail:\n{server.log()[-4000:]}")
        time.sleep(0.3)


def stop_server(server: ComfyServer) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL what is left."""
    proc = server.process
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory) -> ComfyServer:
    """One ComfyUI server per test session; see the module docstring."""
    base = prepare_base_dir(tmp_path_factory.mktemp("comfy_base"))
    server = start_server(base, free_port())
    yield server
    stop_server(server)

"""The embedded ComfyUI (the README's run command, scripts/run.sh) on a free loopback port, for one run."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .server import ComfyServer

RUN_SH = Path(__file__).resolve().parents[1] / "scripts" / "run.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Embedded:
    def __init__(self, extra_args: list, timeout: float = 300.0, log=print):
        self.extra_args, self.timeout, self.log = list(extra_args), timeout, log
        self.proc = None

    def __enter__(self) -> ComfyServer:
        if not RUN_SH.is_file():
            raise RuntimeError(f"no embedded ComfyUI: {RUN_SH} is missing; give --server URL")
        port = free_port()
        self.logfile = tempfile.NamedTemporaryFile(prefix="colorize-comfyui-", suffix=".log", delete=False)
        env = dict(os.environ, COLORIZEDIFFUSION_PORT=str(port), COLORIZEDIFFUSION_LISTEN="127.0.0.1")
        self.proc = subprocess.Popen(["bash", str(RUN_SH), "--disable-auto-launch", *self.extra_args],
                                     stdout=self.logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        server = ComfyServer(f"http://127.0.0.1:{port}")
        self.log(f"starting the embedded ComfyUI on {server.url} (log: {self.logfile.name})")
        deadline = time.monotonic() + self.timeout
        while not server.alive():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the embedded ComfyUI exited (code {self.proc.returncode}); see {self.logfile.name}")
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the embedded ComfyUI did not start in {self.timeout:.0f} s; see {self.logfile.name}")
            time.sleep(0.5)
        return server

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return False

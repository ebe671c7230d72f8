"""scripts/run.sh as a user starts it: with their own --base-directory (a fresh, empty folder) and their own --port
on the command line."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from server_fixture import PACK_DIR_NAME, REPO, free_port


def test_fresh_base_directory_and_port_argument(tmp_path):
    """A fresh --base-directory starts with no error (no missing custom_nodes/, no database error: the database goes
    to the base directory's user/), the pack loads from it, and the banner shows the address ComfyUI really
    listens on (the --port argument wins over COLORIZEDIFFUSION_PORT)."""
    base = tmp_path / "comfy data"          # a space in the path, as users have
    port, other = free_port(), free_port()
    env = dict(os.environ, COLORIZEDIFFUSION_PORT=str(other), COLORIZEDIFFUSION_LISTEN="127.0.0.1")
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["bash", str(REPO / "scripts" / "run.sh"), "--cpu", "--disable-auto-launch",
                                 "--disable-api-nodes", "--base-directory", str(base), "--port", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "To see the GUI go to: http" not in log_path.read_text() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log_path.read_text()
        assert "To see the GUI go to: http" in text, (proc.poll(), text[-3000:])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    banner = re.search(r"^\[run\] open (http://\S+) once", text, re.M)
    gui = re.search(r"To see the GUI go to: (http://\S+)", text)
    assert banner and gui and banner[1] == gui[1] == f"http://127.0.0.1:{port}", text[-3000:]
    assert "Failed to initialize database" not in text and "Traceback" not in text, text[-3000:]
    assert (base / "user" / "comfyui.db").is_file()
    loaded = [line for line in text.splitlines() if line.strip().endswith(f"custom_nodes/{PACK_DIR_NAME}")]
    assert loaded and "IMPORT FAILED" not in loaded[0], text[-3000:]

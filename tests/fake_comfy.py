"""A fake ComfyUI on 127.0.0.1 for the client's fault tests: just enough of the HTTP and websocket API
(/system_stats, /object_info, /upload/image, /prompt, /ws, /history/<id>, /view) to run the tiny workflow below,
and a chosen point where it dies the way a killed server does: every connection cut, the port closed.

Fault points (`die_at`), each on the `on_job`-th job the server sees:
  upload      the sketch's upload is cut before the answer           (before submit)
  prompt      POST /prompt is cut before the answer                  (before submit)
  handshake   the websocket upgrade request is read, then cut        (opening the websocket)
  midrun      the websocket is cut after the first sampling step    (mid-run)
  ws-close    the websocket is closed (close frame) after that step  (mid-run, a server shutting down)
  history     GET /history/<id> is cut after the prompt succeeded    (after the result, before its download)
  view        GET /view sends half of the picture, then is cut       (during the download)
With `stall`, the server goes silent at that point instead (a hung server): nothing more is sent.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import queue
import re
import socket
import threading
import urllib.parse
import uuid
from pathlib import Path

import pytest
from PIL import Image

PHASES = ("upload", "prompt", "handshake", "midrun", "ws-close", "history", "view")
WAIT = 10.0          # the longest any wait of the fake lasts (a test failing must not hang)

OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [["example.png"], {"image_upload": True}]}},
                  "input_order": {"required": ["image"]}},
    "RandomNoise": {"input": {"required": {"noise_seed": ["INT", {"default": 0, "control_after_generate": True}]}},
                    "input_order": {"required": ["noise_seed"]}},
    "ColorizeDiffusionGuider": {"input": {"required": {"reference_scale": ["FLOAT", {"default": 4.0}],
                                                       "sketch_scale": ["FLOAT", {"default": 1.0}]}},
                                "input_order": {"required": ["reference_scale", "sketch_scale"]}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "x"}]}},
                  "input_order": {"required": ["images", "filename_prefix"]}},
}

WORKFLOW = {   # UI format, as ComfyUI saves it
    "nodes": [
        {"id": 1, "type": "LoadImage", "title": "Sketch", "widgets_values": ["example.png", "image"]},
        {"id": 2, "type": "LoadImage", "title": "Reference", "widgets_values": ["example.png", "image"]},
        {"id": 4, "type": "RandomNoise", "widgets_values": [7, "fixed"]},
        {"id": 5, "type": "ColorizeDiffusionGuider", "widgets_values": [4.0, 1.0]},
        {"id": 3, "type": "SaveImage", "inputs": [{"name": "images", "link": 1}], "widgets_values": ["x"]},
    ],
    "links": [[1, 1, 0, 3, 0, "IMAGE"]],
}


def result_png(prompt: dict) -> bytes:
    """The 'colorized' picture: a colour made from the prompt (sketch, seed, guidance), so settings show."""
    digest = hashlib.sha256(json.dumps({k: n["inputs"] for k, n in prompt.items() if n["class_type"] != "SaveImage"},
                                       sort_keys=True).encode()).digest()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), tuple(digest[:3])).save(buf, "PNG")
    return buf.getvalue()


class FakeComfy:
    def __init__(self, die_at: str | None = None, on_job: int = 1, hold: threading.Event | None = None,
                 stall: bool = False):
        """`hold`: each job's run waits for that event first; `stall`: at the fault point the server goes silent
        (the connection kept open, nothing answered until it is closed) instead of dying."""
        assert die_at in PHASES + (None,)
        self.die_at, self.on_job, self.hold, self.stall = die_at, on_job, hold, stall
        self.faulted = threading.Event()          # the fault point was reached
        self.prompts: list = []                   # (prompt id, API prompt), in the order queued
        self.views = 0                            # pictures sent whole
        self.dead = threading.Event()
        self.lock = threading.Lock()
        self.conns: set = set()
        self.sockets: dict = {}                   # client id -> queue of prompt ids for its websocket
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------------------------------ life
    def _accept(self):
        while not self.dead.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.dead.is_set():
                    conn.close()
                    return
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def die(self):
        """As `kill -9`: the port closed, every open connection cut."""
        with self.lock:
            self.dead.set()
            conns, self.conns = list(self.conns), set()
        for s in [self.listener, *conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for q in list(self.sockets.values()):
            q.put(None)

    close = die

    def _fault(self, phase: str, job: int) -> bool:
        """Dies (or stalls) when `phase` is reached on the chosen job (1-based); True then."""
        if self.die_at == phase and job == self.on_job:
            self.faulted.set()
            if self.stall:
                self.dead.wait(WAIT)
            else:
                self.die()
            return True
        return False

    # ------------------------------------------------------------------------------------------ HTTP
    def _serve(self, conn):
        try:
            f = conn.makefile("rb")
            while not self.dead.is_set():
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (h := f.readline().decode().strip()):
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get("content-length", 0) or 0))
                url = urllib.parse.urlsplit(target)
                if url.path == "/ws":
                    self._websocket(conn, f, headers, urllib.parse.parse_qs(url.query)["clientId"][0])
                    return
                if not self._route(conn, method, url, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def _send(self, conn, status: int, body: bytes, kind="application/json") -> bool:
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        return True

    def _json(self, conn, obj, status=200) -> bool:
        return self._send(conn, status, json.dumps(obj).encode())

    def _route(self, conn, method, url, body) -> bool:
        path = url.path
        if path == "/system_stats":
            return self._json(conn, {"system": {}, "devices": []})
        if path == "/object_info":
            return self._json(conn, OBJECT_INFO)
        if path == "/queue":
            return self._json(conn, {"queue_running": [], "queue_pending": []})
        if path == "/upload/image":
            if self._fault("upload", len(self.prompts) + 1):
                return False
            name = re.search(rb'filename="([^"]+)"', body).group(1).decode()
            sub = re.search(rb'name="subfolder"\r\n\r\n([^\r]*)', body)
            return self._json(conn, {"name": name, "subfolder": sub.group(1).decode() if sub else "",
                                     "type": "input"})
        if path == "/prompt" and method == "POST":
            if self._fault("prompt", len(self.prompts) + 1):
                return False
            payload = json.loads(body)
            pid = uuid.uuid4().hex
            with self.lock:
                self.prompts.append((pid, payload["prompt"]))
                q = self.sockets.setdefault(payload["client_id"], queue.Queue())
            q.put(pid)
            return self._json(conn, {"prompt_id": pid, "number": len(self.prompts), "node_errors": {}})
        if path.startswith("/history/"):
            pid = path.rsplit("/", 1)[1]
            job = self._job(pid)
            if self._fault("history", job):
                return False
            images = [{"filename": f"{pid}.png", "subfolder": "", "type": "output"}]
            return self._json(conn, {pid: {"outputs": {"3": {"images": images}},
                                           "status": {"status_str": "success", "completed": True}}} if job else {})
        if path == "/view":
            pid = urllib.parse.parse_qs(url.query)["filename"][0].removesuffix(".png")
            data = result_png(self.prompts[self._job(pid) - 1][1])
            if self.die_at == "view" and self._job(pid) == self.on_job:
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n"
                             .encode() + data[: len(data) // 2])
                return not self._fault("view", self._job(pid))
            with self.lock:                       # counted before it is sent: the client may end at once
                self.views += 1
            return self._send(conn, 200, data, "image/png")
        return self._json(conn, {"error": "not found"}, 404)

    def _job(self, pid: str) -> int:
        """1-based position of a prompt; 0 for an unknown one."""
        ids = [p for p, _ in self.prompts]
        return ids.index(pid) + 1 if pid in ids else 0

    # ------------------------------------------------------------------------------------------ websocket
    def _websocket(self, conn, f, headers, client_id):
        if self._fault("handshake", len(self.prompts) + 1):
            return
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] +
                                                "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        with self.lock:
            q = self.sockets.setdefault(client_id, queue.Queue())
        send = lambda msg: conn.sendall(_frame(1, json.dumps(msg).encode()))  # noqa: E731
        send({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}})
        try:
            pid = q.get(timeout=WAIT)
        except queue.Empty:
            return
        if pid is None:
            return
        job = self._job(pid)
        if self.hold is not None:
            self.hold.wait(WAIT)
        send({"type": "execution_start", "data": {"prompt_id": pid}})
        send({"type": "executing", "data": {"node": "3", "prompt_id": pid}})
        send({"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": pid, "node": "3"}})
        if self.die_at == "ws-close" and job == self.on_job and not self.stall:
            conn.sendall(_frame(8, b"\x03\xe9"))          # 1001: going away
            self._fault("ws-close", job)
            return
        if self._fault("midrun", job) or self._fault("ws-close", job):
            return
        send({"type": "progress", "data": {"value": 2, "max": 2, "prompt_id": pid, "node": "3"}})
        send({"type": "execution_success", "data": {"prompt_id": pid}})
        send({"type": "executing", "data": {"node": None, "prompt_id": pid}})
        # the client closes its websocket after each prompt; wait for that (bounded)
        conn.settimeout(WAIT)
        try:
            while f.read(1):
                pass
        except OSError:
            pass


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big"))
    return head + payload


# ---------------------------------------------------------------------------------------------- test helpers
BOUND = 30.0         # the longest a client run may take in these tests; each takes well under a second


@pytest.fixture
def fakes():
    """make(**FakeComfy options) -> a fake server, closed after the test."""
    made = []

    def make(**kw):
        made.append(FakeComfy(**kw))
        return made[-1]

    yield make
    for f in made:
        f.close()


def inputs(tmp_path: Path, n: int) -> list:
    """Arguments for n sketches (page_00.png, ...), a reference and the fake's workflow."""
    sketches = tmp_path / "sketches"
    sketches.mkdir(exist_ok=True)
    for i in range(n):
        Image.new("L", (16, 16), 40 * i).save(sketches / f"page_{i:02d}.png")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "reference.png")
    (tmp_path / "flow.json").write_text(json.dumps(WORKFLOW))
    return ["--sketch", sketches, "--reference", tmp_path / "reference.png", "--workflow", tmp_path / "flow.json"]


def colorize(args, *servers, via_main=False):
    """(exit code, logged lines) of `python -m client colorize ARGS --server ...`: main() (its messages on
    stderr) or run() (its lines collected); bounded."""
    from client.cli import main, parser, run

    argv = ["colorize", *map(str, args)] + [a for s in servers for a in ("--server", s.url)]
    lines = []
    return bounded(lambda: main(argv) if via_main else run(parser().parse_args(argv), log=lines.append), lines), lines


def bounded(call, lines):
    """call() in a thread that must end within BOUND seconds; its value."""
    result = {}
    t = threading.Thread(target=lambda: result.update(value=call()), daemon=True)
    t.start()
    t.join(BOUND)
    assert not t.is_alive(), f"the client hangs: {lines}"
    return result["value"]

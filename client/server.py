"""One ComfyUI server over HTTP and its websocket (standard library only)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid


class ServerDown(Exception):
    """The server does not answer (refused, reset, timed out)."""


class Rejected(Exception):
    """The server answered with an error about the request (e.g. prompt validation)."""


class ComfyServer:
    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def __repr__(self):
        return self.url

    # ----------------------------------------------------------------------------------------------- HTTP
    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None, timeout=None):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as err:
            raise ServerDown(f"{self.url} does not answer ({getattr(err, 'reason', err)})") from None

    def get_json(self, path: str, timeout=None):
        status, body = self._request(path, timeout=timeout)
        if status != 200:
            raise Rejected(f"GET {path}: HTTP {status} {body[:300]!r}")
        return json.loads(body)

    def post_json(self, path: str, payload) -> tuple[int, object]:
        status, body = self._request(path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def alive(self) -> bool:
        try:
            return self._request("/system_stats", timeout=5)[0] == 200
        except ServerDown:
            return False

    def queue_length(self) -> int:
        q = self.get_json("/queue")
        return len(q.get("queue_running", [])) + len(q.get("queue_pending", []))

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=120)

    def upload(self, path: str, subfolder: str = "") -> str:
        """Upload a picture under a name made from its content (re-runs reuse it), into `subfolder` of the
        server's input folder; returns the name a Load Image node takes ("subfolder/name")."""
        data = open(path, "rb").read()
        ext = os.path.splitext(path)[1].lower() or ".png"
        name = f"cd_{hashlib.sha256(data).hexdigest()[:20]}{ext}"
        boundary = uuid.uuid4().hex
        fields = {"overwrite": "true", "subfolder": subfolder}
        parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode(), data, b"\r\n"]
        parts += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                  for k, v in fields.items() if v]
        parts.append(f"--{boundary}--\r\n".encode())
        status, body = self._request("/upload/image", b"".join(parts),
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise Rejected(f"upload of {os.path.basename(path)}: HTTP {status} {body[:200]!r}")
        answer = json.loads(body)
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, prompt: dict) -> str:
        status, body = self.post_json("/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise Rejected(validation_message(body))
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id, {})

    def download(self, image: dict) -> bytes:
        q = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                                    "type": image.get("type", "output")})
        status, body = self._request(f"/view?{q}")
        if status != 200:
            raise Rejected(f"download of {image['filename']}: HTTP {status}")
        return body

    def interrupt(self) -> None:
        try:
            self.post_json("/interrupt", {})
        except ServerDown:
            pass

    # ------------------------------------------------------------------------------------------ websocket
    def events(self, timeout: float = 600.0):
        """Messages of this client's websocket (dicts), until the caller stops iterating."""
        parts = urllib.parse.urlsplit(self.url)
        host, port = parts.hostname, parts.port or 80
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise ServerDown(f"{self.url} does not answer ({err})") from None
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws?clientId={self.client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        reader = _Reader(sock)
        status = reader.line()
        if b" 101 " not in status:
            sock.close()
            raise Rejected(f"{self.url}: websocket refused ({status!r})")
        while reader.line():
            pass
        try:
            while True:
                opcode, payload = reader.frame()
                if opcode == 1:
                    yield json.loads(payload)
                elif opcode == 8:
                    return
                elif opcode == 9:      # ping -> pong (masked, as a client must)
                    sock.sendall(_frame(10, payload))
        except (OSError, ConnectionError) as err:
            raise ServerDown(f"{self.url} closed the connection ({err})") from None
        finally:
            sock.close()


class _Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def take(self, n):
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill(len(self.buf) + 1)
        out, _, self.buf = self.buf.partition(b"\r\n")
        return out

    def frame(self):
        b0, b1 = self.take(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.take(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.take(8))[0]
        mask = self.take(4) if b1 & 0x80 else None
        data = self.take(n)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return opcode, data


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + struct.pack(">H", n))
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def validation_message(body) -> str:
    """One line from ComfyUI's prompt validation answer."""
    if not isinstance(body, dict):
        return str(body)[:300]
    err = body.get("error") or {}
    lines = [err.get("message", "the server refused the workflow")]
    for node_id, info in (body.get("node_errors") or {}).items():
        for e in info.get("errors", [])[:1]:
            lines.append(f"node {node_id} ({info.get('class_type', '?')}): {e.get('message', '')} "
                         f"{e.get('details', '')}".strip())
    return "; ".join(lines)

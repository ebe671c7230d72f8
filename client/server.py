"""One ComfyUI server over HTTP and its websocket (standard library only)."""
from __future__ import annotations

import base64
import hashlib
import http.client
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


def upload_name(data: bytes, suffix: str) -> str:
    """The name a picture is uploaded under: made from its content, so re-runs reuse the upload."""
    return f"cd_{hashlib.sha256(data).hexdigest()[:20]}{suffix.lower() or '.png'}"


def pool_folder(paths: list) -> str | None:
    """The folder of the server's input/ a reference pool is uploaded into: named by the pool's content."""
    if not paths:
        return None
    digest = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() for p in paths))
    return f"colorize_client_pool/{digest.hexdigest()[:16]}"


class ComfyServer:
    def __init__(self, url: str, timeout: float = 60.0, ws_timeout: float = 600.0):
        """`timeout`: each HTTP request and the websocket handshake; `ws_timeout`: the longest silence on the
        websocket while a prompt runs (ComfyUI reports every sampling step)."""
        self.url = url.rstrip("/")
        self.timeout, self.ws_timeout = timeout, ws_timeout
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
            try:
                return err.code, err.read()
            except (OSError, http.client.HTTPException):
                return err.code, b""
        except (OSError, http.client.HTTPException) as err:     # refused, reset, timed out, cut off mid-answer
            raise ServerDown(f"{self.url} does not answer ({getattr(err, 'reason', None) or err!r})") from None

    def get_json(self, path: str, timeout=None):
        status, body = self._request(path, timeout=timeout)
        if status != 200:
            raise Rejected(f"GET {path}: HTTP {status} {body[:300]!r}")
        return _json(body, f"GET {path}")

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
        with open(path, "rb") as f:
            data = f.read()
        name = upload_name(data, os.path.splitext(path)[1])
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
        answer = _json(body, "upload")
        if not isinstance(answer, dict) or "name" not in answer:
            raise Rejected(f"upload of {os.path.basename(path)}: unexpected answer {body[:200]!r}")
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, prompt: dict) -> str:
        status, body = self.post_json("/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise Rejected(validation_message(body))
        if not isinstance(body, dict) or "prompt_id" not in body:
            raise Rejected(f"POST /prompt: unexpected answer {str(body)[:200]!r}")
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict:
        entry = self.get_json(f"/history/{prompt_id}")
        return entry.get(prompt_id, {}) if isinstance(entry, dict) else {}

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
    def events(self):
        """Messages of this client's websocket (dicts), until the caller stops iterating. Whatever goes wrong
        with the connection, in the handshake or later, is ServerDown; the server closing the websocket too
        (it only does so when it stops)."""
        parts = urllib.parse.urlsplit(self.url)
        host, port = parts.hostname, parts.port or 80
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as err:
            raise ServerDown(f"{self.url} does not answer ({err})") from None
        try:
            reader = self._handshake(sock, host, port)
            sock.settimeout(self.ws_timeout)
            while True:
                opcode, payload = reader.frame()
                if opcode == 1:
                    try:
                        yield json.loads(payload)
                    except ValueError:
                        continue                   # a message the client does not read
                elif opcode == 8:
                    raise ServerDown(f"{self.url} closed the websocket")
                elif opcode == 9:      # ping -> pong (masked, as a client must)
                    sock.sendall(_frame(10, payload))
        except OSError as err:         # ConnectionError and socket.timeout included
            raise ServerDown(f"{self.url} closed the connection ({err})") from None
        finally:
            sock.close()

    def _handshake(self, sock, host, port) -> "_Reader":
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws?clientId={self.client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        reader = _Reader(sock)
        status = reader.line()
        if b" 101 " not in status:          # the job is not at fault: another server may run it
            raise ServerDown(f"{self.url} refused the websocket ({status[:100]!r})")
        while reader.line():
            pass
        return reader


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


def _json(body: bytes, what: str):
    try:
        return json.loads(body)
    except ValueError:
        raise Rejected(f"{what}: the answer is not JSON ({body[:100]!r})") from None


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

"""Jobs over one or several ComfyUI servers: each server works on one job at a time; a server that stops answering
at any point of a job (upload, submission, websocket, history, download) is given up and its job goes to the
others; one that fails a job for a reason outside it (interrupted, out of memory) gives the job back; every job ends
done once, skipped (done with these settings) or failed with its reason, whatever is raised in a worker."""
from __future__ import annotations

import contextlib
import os
import threading
import uuid
import time
from dataclasses import dataclass, field
from pathlib import Path

from .progress import Progress
from . import results
from .server import ComfyServer, Rejected, ServerDown, pool_folder
from .workflow import WorkflowError, fill

TRANSIENT = ("OutOfMemory", "out of memory", "InterruptProcessingException", "interrupted")


@dataclass
class Job:
    sketch: Path
    output: Path
    attempts: int = 0
    state: str = "pending"          # pending | done | skipped | failed
    reason: str = ""
    server: str = ""
    seconds: float = 0.0
    tried: set = field(default_factory=set)
    record: dict | None = None      # what makes this result (client/results.py), written into it

    @property
    def name(self) -> str:
        return self.sketch.name


class JobFailed(Exception):
    pass


class ServerTrouble(Exception):
    """The job did not finish for a reason that is the server's (interrupted, out of memory)."""


class Scheduler:
    def __init__(self, servers: list, prompt: dict, pictures: dict, models: dict, settings: dict, log,
                 verbose: bool = False, stream=None, pool: list | None = None):
        self.stream = stream
        self.pool = pool or []          # reference pool pictures: one folder of each server's input/
        self.pool_folders: dict = {}    # server url -> that folder
        self.servers, self.prompt, self.pictures = servers, prompt, pictures
        self.models, self.settings, self.log, self.verbose = models, settings, log, verbose
        self.changed = threading.Condition()     # guards the job lists and the set of live servers
        self.pending: list[Job] = []
        self.alive = set()
        self.uploaded: dict = {}        # (server url, path) -> server file name

    def run(self, jobs: list) -> None:
        self.pending = [j for j in jobs if j.state == "pending"]
        self.in_flight = 0              # taken by a worker and not yet done, failed or given back
        self.total = len(self.pending)
        self.done = 0
        self.progress = Progress(self.total, self.stream)
        self.alive = {s.url for s in self.servers}
        self.down = {}                  # url -> why it was given up
        threads = [threading.Thread(target=self._worker, args=(s,), daemon=True) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.progress.close()
        for job in self.pending:          # left when every server went away
            job.state, job.reason = "failed", "no server left to run it (" + (
                "; ".join(self.down.values()) or "every server stopped") + ")"

    def _take(self, server) -> Job | None:
        """The next job for `server`: one no other live server is better placed for (one it has not tried yet,
        or one every live server has tried); None once nothing is pending or in flight, or `server` is gone.
        Waits while jobs running elsewhere may still come back."""
        with self.changed:
            while server.url in self.alive:
                for i, job in enumerate(self.pending):
                    if server.url not in job.tried or self.alive <= job.tried:
                        self.in_flight += 1
                        return self.pending.pop(i)
                if not self.pending and not self.in_flight:
                    return None
                self.changed.wait(timeout=5.0)    # every change notifies; the timeout only bounds a lost wake-up
            return None

    def _worker(self, server: ComfyServer) -> None:
        """Runs jobs on `server` until none is left or the server is gone. Whatever is raised, every job it
        takes ends done, failed or given back: none stays counted in flight after the thread."""
        while (job := self._take(server)) is not None:
            job.attempts += 1
            job.tried.add(server.url)
            outcome, why = "failed", f"the client stopped while it ran on {server.url}"
            try:
                outcome, why = self._attempt(server, job)
            finally:
                self._conclude(server, job, outcome, why)
            if outcome == "down":
                return

    def _attempt(self, server, job: Job) -> tuple[str, str]:
        """(outcome, why): done, failed (the job's own fault or an answer the client cannot use), again (the
        server's trouble: interrupted, out of memory) or down (the server stopped answering)."""
        try:
            self._run(server, job)
            return "done", ""
        except ServerDown as exc:
            return "down", str(exc)
        except ServerTrouble as exc:
            return ("failed" if job.attempts > 2 * len(self.servers) else "again"), str(exc)
        except (JobFailed, WorkflowError, Rejected) as exc:
            return "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - an answer or a state the client does not expect
            return "failed", f"{type(exc).__name__}: {exc} (on {server.url})"

    def _conclude(self, server, job: Job, outcome: str, why: str) -> None:
        with self.changed:
            self.in_flight -= 1
            if outcome in ("down", "again"):
                self.pending.insert(0, job)
            else:
                job.state, job.reason = outcome, why
            if outcome == "down":
                self.alive.discard(server.url)
                self.down[server.url] = why
            if outcome == "done":
                self.done += 1
            n, others = self.done, ", ".join(sorted(self.alive)) or "no other server"
            self.changed.notify_all()
        if outcome in ("down", "again"):
            self.progress.dropped(job.name)
        else:
            self.progress.finished(job.name)
        if outcome == "done":
            self.log(f"[{n}/{self.total}] {job.name} -> {job.output} ({job.seconds:.1f} s on {server.url})")
        elif outcome == "down":
            self.log(f"{why}; its job {job.name} goes to {others}")
        elif outcome == "again":
            self.log(f"{job.name}: {why} on {server.url}; trying again")
        else:
            self.log(f"failed: {job.name}: {why}")

    @staticmethod
    def _saved(server, prompt_id: str, wait: float = 30.0) -> list:
        """The pictures a finished prompt saved. The server announces the end of a prompt just before it files
        the prompt's history, so the history is asked again until it is there."""
        deadline = time.monotonic() + wait
        while True:
            entry = server.history(prompt_id)
            if entry.get("status", {}).get("completed") or _saved_pictures(entry) or time.monotonic() > deadline:
                return _saved_pictures(entry)
            time.sleep(0.1)

    def _upload(self, server, path: Path) -> str:
        key = (server.url, str(path))
        if key not in self.uploaded:
            self.uploaded[key] = server.upload(str(path))
        return self.uploaded[key]

    def _pool_folder(self, server) -> str | None:
        """The pool uploaded once per server into a folder named by the pool's content: the server's Reference
        Pool node reads it, encodes it for the first page and keeps it cached for the following ones."""
        if not self.pool:
            return None
        with self.changed:
            folder = self.pool_folders.get(server.url)
        if folder is None:
            folder = pool_folder(self.pool)
            for path in self.pool:
                server.upload(str(path), subfolder=folder)
            with self.changed:
                self.pool_folders[server.url] = folder
        return folder

    def _run(self, server: ComfyServer, job: Job) -> None:
        t0 = time.perf_counter()
        images = {"Sketch": self._upload(server, job.sketch)}
        for title, path in self.pictures.items():
            images[title] = self._upload(server, path)
        pool = self._pool_folder(server)
        # a prefix of its own per submission: the saving node then always runs (ComfyUI reports no picture for a
        # prompt it serves wholly from its cache), while everything before it is still taken from the cache
        prefix = f"colorize_client/{job.sketch.stem}_{uuid.uuid4().hex[:8]}"
        prompt = fill(self.prompt, images=images, models=self.models, settings=self.settings, prefix=prefix,
                      pool=pool)
        events = server.events()
        next(_ready(events), None)
        prompt_id = server.queue(prompt)
        for msg in events:
            kind, data = msg.get("type"), msg.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if kind == "progress":
                self.progress.step(job.name, int(data.get("value", 0)), int(data.get("max", 0)), server.url)
                if self.verbose:
                    self.log(f"  {job.name} on {server.url}: step {data.get('value')}/{data.get('max')}")
            elif kind == "execution_error":
                text = (f"{data.get('node_type', 'a node')} (node {data.get('node_id')}): "
                        f"{data.get('exception_message', '').strip().splitlines()[0] if data.get('exception_message') else ''}")
                if self.verbose:
                    text += "\n" + "".join(data.get("traceback") or [])
                if any(t in (data.get("exception_type", "") + data.get("exception_message", "")) for t in TRANSIENT):
                    raise ServerTrouble(text)
                raise JobFailed(text)
            elif kind == "execution_interrupted":
                raise ServerTrouble("interrupted on the server")
            elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                break
            elif kind == "execution_success":
                break
        saved = self._saved(server, prompt_id)
        if not saved:
            raise JobFailed("the workflow saved no picture")
        data = server.download(saved[0])
        if job.record is not None:
            try:
                data = results.embed(data, job.record)
            except ValueError:
                raise JobFailed(f"the workflow saved {saved[0].get('filename')}, not a PNG picture") from None
        write_result(job.output, data)
        job.server, job.seconds = server.url, time.perf_counter() - t0


def write_result(path: Path, data: bytes) -> None:
    """Complete or absent: a killed run leaves no half-written result. The folder is made only once there is a
    result to write; a failure to write fails the job (not the server)."""
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise JobFailed(f"cannot write {path}: {exc.strerror or exc}") from None


def _saved_pictures(entry: dict) -> list:
    return [img for out in entry.get("outputs", {}).values() for img in out.get("images", [])
            if img.get("type") == "output"]


def _ready(events):
    """Wait for the server's first status message, so nothing of the prompt is missed."""
    for msg in events:
        if msg.get("type") == "status":
            yield msg
            return

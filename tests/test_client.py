"""The HTTP client (`python -m client colorize`) against real ComfyUI servers with the tiny models: one picture
and a folder, two servers sharing a folder of 8 sketches (one of them killed mid-run), resume after a killed
client, and bad arguments. The client imports nothing of the pack and nothing of ComfyUI."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import e2e_support as S
from conftest import REPO
from server_fixture import free_port, start_server, stop_server

TINY = ["--checkpoint", "v2-tiny.safetensors", "--clip-vision", S.TINY_CLIP, "--clip-heads", "4",
        "--vae", S.TINY_VAE, "--width", "64", "--height", "64", "--steps", "2", "--seed", "7"]


@pytest.fixture(scope="module")
def server(comfy_server):
    S.prepare_server(comfy_server)
    return comfy_server


@pytest.fixture(scope="module")
def second_server(server):
    """Another ComfyUI on the same model folders (its own process and port)."""
    extra = start_server(server.base_dir, free_port())
    yield extra
    stop_server(extra)


def _pictures(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        S.sketch_picture(64, 64, shift=2 * i).save(folder / f"page_{i:02d}.png")
    return folder


def _reference(tmp_path) -> Path:
    path = tmp_path / "reference.png"
    S.reference_picture().save(path)
    return path


def _client(*args, log=None):
    from client.cli import main, parser, run

    if log is None:
        return main([str(a) for a in args])
    return run(parser().parse_args([str(a) for a in args]), log=log)


def test_the_client_imports_neither_the_pack_nor_comfyui():
    for path in (REPO / "client").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
        assert not [m for m in names if m.split(".")[0] in ("comfy", "comfy_api", "folder_paths", "nodes",
                                                            "colorize_diffusion", "model_patches", "devtools")], path
    for path in list((REPO / "nodes").glob("*.py")) + list((REPO / "model_patches").rglob("*.py")):
        assert "client" not in {n.module for n in ast.walk(ast.parse(path.read_text()))
                                if isinstance(n, ast.ImportFrom) and n.module}, path


def test_one_picture_and_a_folder(server, tmp_path):
    ref = _reference(tmp_path)
    one = _pictures(tmp_path / "one", 1) / "page_00.png"
    out = tmp_path / "out"
    assert _client("colorize", "--sketch", one, "--reference", ref, "--out", out, "--server", server.url, *TINY) == 0
    result = out / "page_00_colorized.png"
    img = np.asarray(Image.open(result))
    assert img.shape == (64, 64, 3) and img.std() > 1
    folder = _pictures(tmp_path / "folder", 3)
    assert _client("colorize", "--sketch", folder, "--reference", ref, "--out", out, "--server", server.url,
                   *TINY) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"page_{i:02d}_colorized.png" for i in range(3)]
    assert np.array_equal(np.asarray(Image.open(result)), img), "the same sketch, seed and models: the same pixels"


def test_two_servers_share_a_folder_and_survive_one_dying(server, second_server, tmp_path):
    ref = _reference(tmp_path)
    folder = _pictures(tmp_path / "eight", 8)
    out = tmp_path / "out"
    lines = []
    assert _client("colorize", "--sketch", folder, "--reference", ref, "--out", out, "--server", server.url,
                   "--server", second_server.url, *TINY, log=lines.append) == 0
    done = [l for l in lines if "->" in l]
    assert len(done) == 8 and sorted(p.name for p in out.iterdir()) == sorted(
        f"page_{i:02d}_colorized.png" for i in range(8))
    assert any(server.url in l for l in done) and any(second_server.url in l for l in done), done

    # again with fresh results, and the second server killed after its first picture
    out2 = tmp_path / "out2"
    victim = start_server(server.base_dir, free_port())
    killed = threading.Event()

    def log(line):
        lines2.append(line)
        if victim.url in line and "->" in line and not killed.is_set():
            killed.set()
            os.killpg(victim.process.pid, signal.SIGKILL)

    lines2 = []
    try:
        code = _client("colorize", "--sketch", folder, "--reference", ref, "--out", out2, "--server", server.url,
                       "--server", victim.url, *TINY, log=log)
    finally:
        stop_server(victim)
    assert killed.is_set(), "the second server never finished a picture"
    assert code == 0, [line for line in lines2 if "->" not in line]
    done2 = [l for l in lines2 if "->" in l]
    assert len(done2) == 8, lines2                              # every sketch exactly once
    assert sorted(p.name for p in out2.iterdir()) == sorted(f"page_{i:02d}_colorized.png" for i in range(8))


def test_resume_after_a_killed_client(server, tmp_path):
    ref = _reference(tmp_path)
    folder = _pictures(tmp_path / "six", 6)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "client", "colorize", "--sketch", str(folder), "--reference", str(ref), "--out",
           str(out), "--server", server.url, *TINY]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("*_colorized.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*_colorized.png")}
    assert 1 <= len(first) < 6
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"skipped {len(first)}" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(f"page_{i:02d}_colorized.png" for i in range(6))
    assert all((out / n).stat().st_mtime_ns == t for n, t in first.items()), "a finished result was redone"


def test_bad_arguments_say_one_line_and_leave_the_output_alone(server, tmp_path, capsys):
    ref = _reference(tmp_path)
    out = tmp_path / "never"
    base = ["colorize", "--reference", ref, "--out", out, "--server", server.url, *TINY]
    assert _client(*base, "--sketch", tmp_path / "missing.png") == 2
    assert "missing.png: no such file" in capsys.readouterr().err and not out.exists()
    sketch = _pictures(tmp_path / "s", 1) / "page_00.png"
    assert _client(*base, "--sketch", sketch, "--mode", "watercolour") == 2
    assert "unknown mode or workflow 'watercolour'" in capsys.readouterr().err and not out.exists()
    assert _client(*[a if a != "v2-tiny.safetensors" else "v9.safetensors" for a in base], "--sketch", sketch) == 2
    err = capsys.readouterr().err
    assert "v9.safetensors is not in models/colorizediffusion" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert _client(*base, "--sketch", sketch, "--mode", "background") == 2
    assert "needs a background picture" in capsys.readouterr().err and not out.exists()
    # a mode the checkpoint's family has no network for: the node's own message, one line, no output folder
    v1 = [a if a != "v2-tiny.safetensors" else S.TINY_CHECKPOINTS["v1"] for a in base]
    assert _client(*v1, "--sketch", sketch, "--mode", "style") == 1
    text = capsys.readouterr().out
    assert "ColorizeDiffusion Style Encoder needs a ColorizeDiffusion v2 checkpoint" in text and not out.exists()

    # a damaged picture in a folder fails its own job only; the exit code says so
    folder = _pictures(tmp_path / "mixed", 2)
    data = (folder / "page_01.png").read_bytes()
    (folder / "page_01.png").write_bytes(data[: len(data) // 2])
    out2 = tmp_path / "mixed_out"
    assert _client("colorize", "--sketch", folder, "--reference", ref, "--out", out2, "--server", server.url,
                   *TINY) == 1
    text = capsys.readouterr().out
    assert "page_01.png" in text and "damaged or truncated" in text
    assert [p.name for p in out2.iterdir()] == ["page_00_colorized.png"]


def test_without_server_the_embedded_comfyui_runs_for_the_command(server, tmp_path):
    """No --server: the client starts scripts/run.sh on a free port for the run and stops it afterwards."""
    from server_fixture import PACK_DIR_NAME

    ref = _reference(tmp_path)
    sketch = _pictures(tmp_path / "one", 1) / "page_00.png"
    out = tmp_path / "out"
    lines = []
    comfy = ["--cpu", "--base-directory", str(server.base_dir), "--database-url", "sqlite:///:memory:",
             "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR_NAME]
    assert _client("colorize", "--sketch", sketch, "--reference", ref, "--out", out, *TINY, "--comfy-args", *comfy,
                   log=lines.append) == 0
    started = [l for l in lines if l.startswith("starting the embedded ComfyUI on ")]
    assert started and (out / "page_00_colorized.png").is_file()
    url = started[0].split(" on ")[1].split(" ")[0]
    from client.server import ComfyServer
    assert not ComfyServer(url).alive(), "the embedded server is still running after the command"


def test_results_never_overwrite_inputs_or_each_other(tmp_path, capsys):
    """Refused before anything is sent (nothing listens on the server's port)."""
    d = tmp_path / "sketches"
    _pictures(d, 1)
    S.sketch_picture().save(d / "page_00.jpg")               # same name, another format: two distinct outputs
    ref = _reference(tmp_path)
    from client.cli import parser, plan

    jobs = plan(parser().parse_args(["colorize", "--sketch", str(d), "--reference", str(ref), "--out", str(d)]))
    assert sorted(j.output.name for j in jobs) == ["page_00_jpg_colorized.png", "page_00_png_colorized.png"]
    evil = d / "page_00_colorized.png"                    # an input with the name the output would take
    S.reference_picture().save(evil)
    code = _client("colorize", "--sketch", d / "page_00.jpg", "--reference", evil, "--out", d,
                   "--server", "http://127.0.0.1:9")
    assert code == 2 and "page_00_colorized.png is an input" in capsys.readouterr().err


def test_progress_shows_an_overall_bar_and_one_per_running_job():
    import io

    from client.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    p = Progress(3, out)
    p.step("page_00.png", 5, 20, "http://gpu1:8188")
    p.step("page_01.png", 20, 20, "http://gpu2:8188")
    p.finished("page_01.png")
    last = out.getvalue().split("\r\x1b[2K")[-1]
    assert last.startswith("[####........] 1/3")
    assert "page_00.png [##......] 5/20 @gpu1:8188" in last and "page_01" not in last
    quiet = io.StringIO()                  # not a terminal: nothing drawn (the finished jobs are logged as lines)
    Progress(2, quiet).step("a.png", 1, 2, "http://x")
    assert quiet.getvalue() == ""


def test_a_job_given_back_late_is_still_run_by_the_server_left(tmp_path):
    """The one server left waits for jobs still running elsewhere: when their server dies after the queue ran
    dry, they come back and are done, not reported as lost (no ComfyUI needed: the job runs are simulated)."""
    from client.jobs import Job, Scheduler
    from client.server import ServerDown

    class Fake:
        def __init__(self, url):
            self.url = url

    slow, fast = Fake("http://slow"), Fake("http://fast")

    emptied = threading.Event()

    class Simulated(Scheduler):
        def _run(self, server, job):
            if server is slow:
                assert emptied.wait(30)    # dies after `fast` has emptied the queue
                raise ServerDown("killed")
            job.server = server.url

        def _conclude(self, server, job, outcome, why):
            super()._conclude(server, job, outcome, why)
            if server is fast and not self.pending:
                emptied.set()

    jobs = [Job(tmp_path / f"{i}.png", tmp_path / f"{i}_out.png") for i in range(2)]
    Simulated([slow, fast], {}, {}, {}, {}, lambda line: None).run(jobs)
    assert [j.state for j in jobs] == ["done", "done"] and {j.server for j in jobs} == {"http://fast"}


def test_a_chapter_from_a_pool_keeps_each_page_size_and_encodes_the_pool_once(server, tmp_path, capsys):
    """--pool: each page's references are retrieved from the pool on the server (the chapter workflow); the pool
    is uploaded once into a folder named by its content and encoded once: the following pages take the Reference
    Pool node from ComfyUI's cache. Each result has its page's size, the page's black lines kept."""
    pages = tmp_path / "pages"
    pages.mkdir()
    sizes = {"p1.png": (100, 70), "p2.png": (90, 64), "p3.png": (100, 70)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        S.sketch_picture(h, w, shift=2 * i).save(pages / name)
    pool = tmp_path / "pool"
    pool.mkdir()
    S.reference_picture().save(pool / "a.png")
    S.reference_picture(60, 90, seed=7).save(pool / "b.png")
    out = tmp_path / "out"
    before = set(server.get_json("/history"))
    assert _client("colorize", "--sketch", pages, "--pool", pool, "--out", out, "--server", server.url, *TINY) == 0
    for name, (h, w) in sizes.items():
        page = np.asarray(Image.open(pages / name).convert("RGB"))
        img = np.asarray(Image.open(out / name.replace(".png", "_colorized.png")).convert("RGB"))
        assert img.shape == (h, w, 3)
        black = page.max(-1) == 0
        assert black.any() and (img[black] == 0).all()
        assert img[~black].std() > 1
    entries = [e for k, e in server.get_json("/history").items() if k not in before]
    assert len(entries) == 3
    pool_ids = {k for e in entries for k, n in e["prompt"][2].items()
                if n["class_type"] == "ColorizeDiffusionReferencePool"}
    folders = {n["inputs"]["folder"] for e in entries for n in e["prompt"][2].values()
               if n["class_type"] == "ColorizeDiffusionReferencePool"}
    assert len(pool_ids) == 1 and len(folders) == 1 and next(iter(folders)).startswith("colorize_client_pool/")

    def cached(entry):
        return {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}
    entries.sort(key=lambda e: e["prompt"][0])
    assert [bool(pool_ids & cached(e)) for e in entries] == [False, True, True], "the pool was encoded again"

    # --pool with a one-reference workflow, or a pool that is not a folder of pictures: one line each
    assert _client("colorize", "--sketch", pages, "--pool", pool, "--mode", "vanilla", "--out", tmp_path / "o2",
                   "--server", server.url, *TINY) == 2
    assert "--pool needs a workflow with a Reference Pool node" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _client("colorize", "--sketch", pages, "--pool", empty, "--out", tmp_path / "o3", "--server", server.url,
                   *TINY) == 2
    assert "holds no pictures" in capsys.readouterr().err
    assert _client("colorize", "--sketch", pages, "--mode", "chapter", "--reference", pool / "a.png", "--out",
                   tmp_path / "o4", "--server", server.url, *TINY) == 2
    assert "retrieves its references from a pool: --pool DIR" in capsys.readouterr().err
    assert not any((tmp_path / o).exists() for o in ("o2", "o3", "o4"))


def test_a_colorflow_chapter_through_the_client(server, tmp_path):
    """The ColorFlow chapter workflow (its tiny-model variant saved from the server's node schemas, as a user saves
    a workflow) per page through --workflow and --pool: one result per page, decolorized first and so at 1.5x the
    working resolution (the app's output size)."""
    import json

    from colorize_diffusion.devtools import workflows as wf

    ui = wf.build("chapter_colorflow", S.variant_options("chapter_colorflow")).to_ui(server.get_json("/object_info"))
    flow = tmp_path / "colorflow.json"
    flow.write_text(json.dumps(ui))
    pages = tmp_path / "pages"
    pages.mkdir()
    S.sketch_picture(72, 56).save(pages / "p1.png")
    S.sketch_picture(64, 64, shift=4).save(pages / "p2.png")
    pool = tmp_path / "pool"
    pool.mkdir()
    S.reference_picture().save(pool / "a.png")
    out = tmp_path / "out"
    assert _client("colorize", "--sketch", pages, "--pool", pool, "--workflow", flow, "--out", out,
                   "--server", server.url) == 0
    sizes = {p.name: Image.open(p).size for p in out.iterdir()}
    assert sizes == {"p1_colorized.png": (384, 384), "p2_colorized.png": (384, 384)}   # 1.5 x 256x256

"""The HTTP client under server faults, against fake ComfyUI servers on 127.0.0.1 (tests/fake_comfy.py) that die
at a chosen point of a job: before submit, opening the websocket, mid-run, after the result and during its
download. With a second server the job goes there and every sketch is done exactly once; alone, the jobs fail by
name; never a hang. And what is refused before any job: an --out that cannot be an output folder."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from fake_comfy import BOUND, OBJECT_INFO, PHASES, WORKFLOW, bounded, colorize, fakes, inputs  # noqa: F401

@pytest.mark.parametrize("phase", PHASES)
def test_a_server_dying_at_any_point_gives_its_job_to_the_other(phase, fakes, tmp_path):
    """The dying server has done one job and dies in its second; the other holds its first job until then, so
    the dying one always gets to a second job."""
    dying = fakes(die_at=phase, on_job=2)
    healthy = fakes(hold=dying.faulted)
    code, lines = colorize([*inputs(tmp_path, 4), "--out", tmp_path / "out"], dying, healthy)
    assert dying.dead.is_set() and dying.views == 1               # it died in its second job
    assert code == 0, lines
    done = [line for line in lines if " -> " in line]
    assert sorted(line.split(" -> ")[0].split()[-1] for line in done) == [f"page_{i:02d}.png" for i in range(4)]
    assert dying.views + healthy.views == 4                       # every picture downloaded exactly once
    assert any(line.startswith(f"{dying.url} ") and f"goes to {healthy.url}" in line for line in lines), lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"page_{i:02d}_colorized.png" for i in range(4)]


@pytest.mark.parametrize("phase", PHASES)
def test_a_server_that_hangs_at_any_point_is_given_up_within_its_timeout(phase, fakes, tmp_path):
    """A server that goes silent (the connection open, no answer) is given up after the client's timeouts (here
    1 s) and its job goes to the other server."""
    from client.jobs import Job, Scheduler
    from client.server import ComfyServer
    from client.workflow import to_api

    hung = fakes(die_at=phase, stall=True)
    healthy = fakes(hold=hung.faulted)
    args = inputs(tmp_path, 3)
    jobs = [Job(p, tmp_path / "out" / f"{p.stem}_colorized.png") for p in sorted(args[1].iterdir())]
    servers = [ComfyServer(hung.url, timeout=1.0, ws_timeout=1.0), ComfyServer(healthy.url)]
    lines = []
    scheduler = Scheduler(servers, to_api(WORKFLOW, OBJECT_INFO), {"Reference": args[3]}, {}, {}, lines.append)
    bounded(lambda: scheduler.run(jobs), lines)
    assert hung.faulted.is_set() and [j.state for j in jobs] == ["done"] * 3, lines
    assert {j.server for j in jobs} == {healthy.url} and healthy.views == 3
    assert any(line.startswith(hung.url) and f"goes to {healthy.url}" in line for line in lines), lines


@pytest.mark.parametrize("phase", PHASES)
def test_a_lone_server_dying_fails_each_job_by_name(phase, fakes, tmp_path):
    dying = fakes(die_at=phase, on_job=1)
    code, lines = colorize([*inputs(tmp_path, 2), "--out", tmp_path / "out"], dying)
    assert code == 1, lines
    for name in ("page_00.png", "page_01.png"):
        assert any(line.startswith("FAILED ") and name in line and "no server left to run it" in line
                   and dying.url in line for line in lines), lines
    assert not (tmp_path / "out").exists()


def test_a_result_that_cannot_be_written_fails_its_job_not_the_server(fakes, tmp_path):
    server = fakes()
    (tmp_path / "out" / "page_01_colorized.png.part").mkdir(parents=True)   # in the way of the temporary file
    code, lines = colorize([*inputs(tmp_path, 3), "--out", tmp_path / "out"], server)
    assert code == 1
    assert [line for line in lines if line.startswith("FAILED ")] == [
        next(line for line in lines if line.startswith("FAILED "))]
    assert any("page_01.png" in line and "cannot write" in line for line in lines if line.startswith("FAILED "))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["page_00_colorized.png",
                                                                        "page_02_colorized.png"]


def test_a_worker_never_dies_with_a_job_in_flight(tmp_path):
    """An error the client does not expect fails that job by name; the thread goes on with the next ones, and the
    other server is not left waiting for the job (no ComfyUI: the job runs are simulated)."""
    from client.jobs import Job, Scheduler

    odd, fine = SimpleNamespace(url="http://odd"), SimpleNamespace(url="http://fine")
    raised = threading.Event()

    class Simulated(Scheduler):
        def _run(self, server, job):
            if server is odd and not raised.is_set():
                raised.set()
                raise KeyError("prompt_id")
            raised.wait(BOUND)              # `fine` leaves jobs for `odd` until its first one went wrong
            job.server = server.url

    jobs = [Job(tmp_path / f"{i}.png", tmp_path / f"{i}_out.png") for i in range(4)]
    lines = []
    bounded(lambda: Simulated([odd, fine], {}, {}, {}, {}, lines.append).run(jobs), lines)
    failed = [j for j in jobs if j.state == "failed"]
    assert len(failed) == 1 and "KeyError" in failed[0].reason and "http://odd" in failed[0].reason
    assert [j.state for j in jobs if j not in failed] == ["done"] * 3
    assert any(line.startswith(f"failed: {failed[0].name}: KeyError") for line in lines)


@pytest.mark.parametrize("out", ["a_file.png", "a_file.png/results"])
def test_an_out_that_cannot_be_a_folder_is_refused_before_any_job(out, fakes, tmp_path, capsys):
    server = fakes()
    (tmp_path / "a_file.png").write_bytes(b"keep me")
    code, _ = colorize([*inputs(tmp_path, 2), "--out", tmp_path / out], server, via_main=True)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: --out "), err
    assert "is a file" in err and "Traceback" not in err
    assert server.prompts == [] and (tmp_path / "a_file.png").read_bytes() == b"keep me"


def test_a_folder_in_the_way_of_a_result_is_refused_before_any_job(fakes, tmp_path, capsys):
    server = fakes()
    (tmp_path / "out" / "page_01_colorized.png").mkdir(parents=True)
    code, _ = colorize([*inputs(tmp_path, 2), "--out", tmp_path / "out"], server, via_main=True)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "page_01_colorized.png is in the way" in err
    assert server.prompts == [] and [p.name for p in (tmp_path / "out").iterdir()] == ["page_01_colorized.png"]


def test_a_workflow_file_that_is_no_workflow_says_so_in_one_line(fakes, tmp_path, capsys):
    server = fakes()
    args = inputs(tmp_path, 1)
    (tmp_path / "flow.json").write_text("{not json")
    code, _ = colorize([*args, "--out", tmp_path / "out"], server, via_main=True)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot be read as a workflow" in err
    (tmp_path / "flow.json").write_text(json.dumps({"3": {"class_type": "SaveImage", "inputs": {}}}))
    code, _ = colorize([*args, "--out", tmp_path / "out"], server, via_main=True)
    err = capsys.readouterr().err
    assert code == 2 and "API-format export" in err and len(err.strip().splitlines()) == 1
    assert server.prompts == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, says", [
    (("--server", "localhost:8188"), "--server localhost:8188: give the server's address as http://HOST:PORT"),
    (("--server", "http://127.0.0.1:port"), "give the server's address as http://HOST:PORT"),
    (("--reference", "."), ": a folder, not a picture"),
])
def test_bad_addresses_and_paths_say_one_line(change, says, tmp_path, capsys):
    args = [str(a) for a in inputs(tmp_path, 1)] + ["--out", str(tmp_path / "out"), "--server", "http://127.0.0.1:9"]
    flag, value = change
    args[args.index(flag) + 1] = value
    code, _ = colorize(args, via_main=True)
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()

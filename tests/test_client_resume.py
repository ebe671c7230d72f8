"""Resume that knows the settings, against a fake ComfyUI (tests/fake_comfy.py): a result is done only for the
settings and the sketch that made it (its record, in the PNG); a re-run with other settings, another reference or
a redrawn sketch is refused before any job in one line that names the difference and what to pass."""
from __future__ import annotations

import json

from PIL import Image

from fake_comfy import colorize, fakes, inputs  # noqa: F401 - fakes: a fixture


def _refused(args, server, capsys) -> str:
    before = len(server.prompts)
    code, _ = colorize(args, server, via_main=True)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert len(server.prompts) == before, "something was queued"
    return err


def test_a_result_counts_as_done_only_for_the_settings_and_sketch_that_made_it(fakes, tmp_path, capsys):
    server = fakes()
    out = tmp_path / "out"
    args = [*inputs(tmp_path, 2), "--out", out]
    code, lines = colorize(args, server)
    assert code == 0 and len(server.prompts) == 2
    made = {p.name: p.read_bytes() for p in out.iterdir()}
    record = json.loads(Image.open(out / "page_00_colorized.png").text["colorize-client"])
    assert record["workflow"] == "flow.json" and record["prompt"]["4"]["inputs"]["noise_seed"] == 7

    code, lines = colorize(args, server)                       # the same command: nothing to do
    assert code == 0 and len(server.prompts) == 2 and "skipped 2 (done with these settings)" in lines[-1]

    err = _refused([*args, "--seed", "99"], server, capsys)
    assert err == (f"error: {out} holds 2 results made otherwise: 2 with other settings (RandomNoise noise_seed "
                   "was 7, now 99); pass --overwrite to replace them, or another --out to keep them\n")
    err = _refused([*args, "--reference-scale", "2"], server, capsys)
    assert "(ColorizeDiffusionGuider reference_scale was 4.0, now 2.0)" in err
    Image.new("RGB", (16, 16), (0, 0, 250)).save(tmp_path / "reference.png")
    assert "(another reference picture)" in _refused(args, server, capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == made

    code, _ = colorize([*args, "--seed", "99", "--overwrite"], server)
    assert code == 0 and len(server.prompts) == 4
    assert all(p.read_bytes() != made[p.name] for p in out.iterdir())
    code, lines = colorize([*args, "--seed", "99"], server)   # now these are the results of seed 99
    assert code == 0 and len(server.prompts) == 4 and "skipped 2" in lines[-1]


def test_a_redrawn_sketch_a_result_without_record_and_a_new_page(fakes, tmp_path, capsys):
    server = fakes()
    out = tmp_path / "out"
    args = [*inputs(tmp_path, 2), "--out", out]
    assert colorize(args, server)[0] == 0
    sketches = tmp_path / "sketches"
    Image.new("L", (16, 16), 255).save(sketches / "page_02.png")       # a new page: only it is done
    code, lines = colorize(args, server)
    assert code == 0 and len(server.prompts) == 3 and "done 1, skipped 2" in lines[-2] + lines[-1]

    Image.new("L", (16, 16), 7).save(sketches / "page_01.png")          # redrawn
    err = _refused(args, server, capsys)
    assert "1 result made otherwise: 1 from another drawing of the same name (page_01.png); pass --overwrite to " \
           "replace it" in err
    Image.new("L", (16, 16), 40).save(sketches / "page_01.png")         # back as it was
    Image.new("RGB", (16, 16)).save(out / "page_02_colorized.png")     # made by hand
    assert "1 with no record of their settings" in _refused(args, server, capsys)

    (out / "page_02_colorized.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")    # a damaged result is redone
    code, lines = colorize(args, server)
    assert code == 0 and len(server.prompts) == 4 and "done 1, skipped 2" in " ".join(lines)

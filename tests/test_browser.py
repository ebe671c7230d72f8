"""The real ComfyUI frontend in headless Chromium (playwright-core): every example workflow loads through
``app.loadGraphData`` with no missing node type and no widget problem, saves back to itself and converts to
its API copy; the vanilla workflow (tiny models) is queued from the page and produces a picture.

Needs Chromium (/usr/bin/chromium, or $CHROMIUM) and playwright-core in .host/node: ``bash
scripts/install_browser.sh`` installs both. Without them the tests are skipped, unless
COLORIZEDIFFUSION_REQUIRE_BROWSER=1 (CI), which makes that an error. Screenshots go to the test's tmp dir.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

import e2e_support as S
from colorize_diffusion.devtools import colorflow_workflows as cf
from colorize_diffusion.devtools import workflows as wf
from server_fixture import PACK_DIR_NAME, REPO

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = REPO / ".host" / "node" / "node_modules" / "playwright-core"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEMS = list(wf.WORKFLOWS)


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM}"
    if not (PLAYWRIGHT / "package.json").is_file():
        return f"playwright-core not installed in {PLAYWRIGHT.parent}"
    if shutil.which("node") is None:
        return "node (Node.js) not found"
    return None


if _missing() is not None and os.environ.get("COLORIZEDIFFUSION_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"{_missing()}: run `bash scripts/install_browser.sh` (COLORIZEDIFFUSION_REQUIRE_BROWSER=1 "
                       "makes a missing browser an error instead of a skip)")

pytestmark = [
    pytest.mark.skipif(_missing() is not None, reason=f"{_missing()}: run `bash scripts/install_browser.sh`"),
    pytest.mark.skipif(not S.tiny_models_available(), reason="tiny golden models not found"),
]

DRIVER = r"""
const fs = require('fs');
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(cfg.playwright);

async function main() {
  const browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args: cfg.flags });
  const out = { workflows: {}, console: [], queue: null };
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    let phase = 'startup';
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') out.console.push([phase, m.type(), m.text()]); });
    page.on('pageerror', (e) => out.console.push([phase, 'pageerror', String(e)]));
    await page.goto(cfg.url, { waitUntil: 'load' });
    await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph &&
      Object.keys(window.LiteGraph.registered_node_types).length > 50 &&
      window.LiteGraph.registered_node_types['ColorizeDiffusionApplySketch'], null, { timeout: 120000 });
    await page.waitForTimeout(1500);

    // the template browser: opened by the frontend for a new user, or through its command
    phase = 'templates';
    const dialogText = () => page.evaluate(() => [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText).join('\n'));
    if (!(await dialogText()).includes('Templates')) {
      await page.evaluate(() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates'));
    }
    await page.waitForFunction((pack) => [...document.querySelectorAll('.p-dialog')].some((d) => d.innerText.includes(pack)),
      cfg.packTitle, { timeout: 30000 }).catch(() => {});
    const extensions = page.getByText(cfg.packTitle, { exact: false }).first();
    if (await extensions.count()) { await extensions.click().catch(() => {}); await page.waitForTimeout(1500); }
    out.templates = await dialogText();
    await page.screenshot({ path: `${cfg.shots}/template_browser.png` });
    for (let i = 0; i < 3 && (await dialogText()); i++) {
      // the dialog's close button: the right-most visible button of its top row (it has no label)
      const xy = await page.evaluate(() => {
        const d = document.querySelector('.p-dialog'); if (!d) return null;
        const top = d.getBoundingClientRect().top;
        const btns = [...d.querySelectorAll('button')].filter((b) => getComputedStyle(b).opacity !== '0')
          .map((b) => b.getBoundingClientRect()).filter((r) => r.width > 0 && r.top < top + 100);
        if (!btns.length) return null;
        const r = btns.reduce((a, b) => (b.right > a.right ? b : a));
        return [r.left + r.width / 2, r.top + r.height / 2];
      });
      if (xy) await page.mouse.click(xy[0], xy[1]); else await page.keyboard.press('Escape');
      await page.waitForTimeout(400);
    }
    out.dialogsAfterClose = await dialogText();

    for (const stem of cfg.stems) {
      phase = 'load:' + stem;
      const r = await page.evaluate(async ({ stem, pack, fileWidgets }) => {
        const resp = await fetch(`/api/workflow_templates/${pack}/${stem}.json`);
        const file = await resp.json();
        const missing = file.nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
        await app.loadGraphData(file, true, true, stem);
        // the missing-models dialog opens asynchronously (slow on a busy 2-core machine): wait until it lists
        // every model of the file, or 20 s
        const want = (file.models || []).length;
        const listed = () => [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText)
          .filter((t) => t.includes('Missing')).map((t) => t.split('Download').length - 1);
        for (let t = 0; t < 200 && !(want === 0 || listed().some((n) => n >= want)); t++)
          await new Promise((res) => setTimeout(res, 100));
        await new Promise((res) => setTimeout(res, 300));
        const problems = [];
        for (const node of app.graph.nodes) {
          if (node.has_errors) problems.push(`${node.type} #${node.id}: has_errors`);
          for (const w of node.widgets || []) {
            const o = w.options || {};
            if (typeof w.value === 'number') {
              if (!Number.isFinite(w.value)) problems.push(`${node.type}.${w.name}: ${w.value}`);
              if (o.min !== undefined && w.value < o.min) problems.push(`${node.type}.${w.name}: ${w.value} < ${o.min}`);
              if (o.max !== undefined && w.value > o.max) problems.push(`${node.type}.${w.name}: ${w.value} > ${o.max}`);
            }
            // model/picture names are the official ones, not what this test server has
            if (w.type === 'combo' && Array.isArray(o.values) && !o.values.includes(w.value) &&
                !fileWidgets.includes(`${node.type}.${w.name}`))
              problems.push(`combo ${node.type}.${w.name}: ${JSON.stringify(w.value)} not in the list`);
          }
        }
        const dialogs = [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText.slice(0, 2000));
        const saved = app.graph.serialize();
        const api = (await app.graphToPrompt()).output;
        return { missing, problems, dialogs, saved, api, nodes: app.graph.nodes.length };
      }, { stem, pack: cfg.pack, fileWidgets: cfg.fileWidgets });
      out.workflows[stem] = r;
      await page.keyboard.press('Escape');
      await page.screenshot({ path: `${cfg.shots}/${stem}.png` });
    }

    // queue the test variant (tiny models) from the page, wait for its history entry
    phase = 'queue';
    const variant = JSON.parse(fs.readFileSync(cfg.variant, 'utf8'));
    out.queue = await page.evaluate(async ({ variant }) => {
      const before = Object.keys(await (await fetch('/api/history')).json());
      await app.loadGraphData(variant, true, true, 'browser-test');
      const queued = await app.queuePrompt(0, 1);
      app.canvas.pause_rendering = true;     // no repaints while the CPU samples (2-core CI machines)
      return { queued, before };
    }, { variant });
    // wait from Node, not from the page, so that the browser stays idle while the server works
    const before = new Set(out.queue.before);
    const t0 = Date.now();
    while (Date.now() - t0 < cfg.timeoutMs) {
      const hist = await (await fetch(cfg.url + '/api/history')).json();
      const done = Object.entries(hist).find(([id, e]) => !before.has(id) && e.status &&
        e.status.completed !== undefined && e.status.status_str !== 'pending');
      if (done) { Object.assign(out.queue, { id: done[0], status: done[1].status, outputs: done[1].outputs }); break; }
      await new Promise((res) => setTimeout(res, 250));
    }
    if (!out.queue.status) out.queue.timeout = true;
    delete out.queue.before;
    await page.evaluate(() => { app.canvas.pause_rendering = false; app.graph.setDirtyCanvas(true, true); });
    await page.waitForTimeout(500);
    await page.screenshot({ path: `${cfg.shots}/queued.png` });
  } finally {
    await browser.close();
  }
  process.stdout.write('\n@@RESULT@@' + JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def browser_run(comfy_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    shots = work / "screenshots"
    shots.mkdir()
    S.prepare_server(comfy_server)
    prefix = "browser/vanilla"
    variant = wf.build("vanilla", S.variant_options("vanilla", filename_prefix=prefix)).to_ui(
        comfy_server.get_json("/object_info"))
    (work / "variant.json").write_text(json.dumps(variant))
    (work / "driver.js").write_text(DRIVER)
    cfg = {"url": comfy_server.url, "pack": PACK_DIR_NAME, "stems": STEMS, "chromium": CHROMIUM,
           "flags": FLAGS, "playwright": str(PLAYWRIGHT), "shots": str(shots), "variant": str(work / "variant.json"),
           "timeoutMs": 300_000,
           "fileWidgets": sorted(f"{t}.{w}" for t, w in wf.FILE_WIDGETS), "packTitle": PACK_DIR_NAME}
    (work / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run(["node", str(work / "driver.js"), str(work / "config.json")], capture_output=True,
                          text=True, timeout=600, cwd=work)
    assert proc.returncode == 0, f"browser driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.split("@@RESULT@@", 1)[1])
    result["shots"] = shots
    return result


def _relevant(console: list, phase_prefix: str) -> list:
    """Console errors/warnings of a phase, minus the host's own noise (no core templates package installed)."""
    noise = ("Failed to load resource", "workflow_templates", "templates", "favicon",
             "api.comfy.org",     # the frontend's registry look-ups, blocked by the host's CSP (no network)
             "huggingface.co/", "Error fetching file size")   # the missing-models dialog sizing the downloads
    return [c for c in console if c[0].startswith(phase_prefix) and not any(n in c[2] for n in noise)]


def test_template_browser_lists_the_workflows(browser_run):
    text = browser_run["templates"]
    assert PACK_DIR_NAME in text, text[:2000]
    for stem in STEMS:
        assert stem in text, f"{stem} not offered by the template browser"
    assert (browser_run["shots"] / "template_browser.png").stat().st_size > 10_000
    assert browser_run["dialogsAfterClose"] == ""


@pytest.mark.parametrize("stem", STEMS)
def test_example_workflow_loads_in_frontend(browser_run, stem):
    r = browser_run["workflows"][stem]
    assert r["missing"] == [], f"missing node types: {r['missing']}"
    assert r["problems"] == [], r["problems"]
    # this server has none of the official files: the frontend offers each model's download, and nothing else
    # is reported missing
    models = json.loads((REPO / "example_workflows" / f"{stem}.json").read_text())["models"]
    reported = [d for d in r["dialogs"] if "missing" in d.lower()]
    assert len(reported) == 1 and reported[0].startswith("Missing Models"), r["dialogs"]
    family = wf.WORKFLOWS[stem].family
    clip = wf.CLIP_VISION_XL if family in wf.XL_FAMILIES else cf.IMAGE_ENCODER if family in cf.COLORFLOW_FAMILIES \
        else wf.CLIP_VISION
    assert reported[0].count("Download") == len(models) and f"clip_vision / {clip}" in reported[0]
    errors = _relevant(browser_run["console"], f"load:{stem}")
    assert errors == [], "\n".join(map(str, errors))
    assert (browser_run["shots"] / f"{stem}.png").stat().st_size > 10_000


@pytest.mark.parametrize("stem", STEMS)
def test_frontend_saves_and_exports_the_same_graph(browser_run, stem):
    """What the frontend saves after loading equals the file (nodes, sockets, links, widget values), and its
    API export equals tests/workflows/<stem>.api.json."""
    r = browser_run["workflows"][stem]
    file = json.loads((REPO / "example_workflows" / f"{stem}.json").read_text())

    def norm(graph):
        nodes = {}
        for n in graph["nodes"]:
            nodes[n["id"]] = {
                "type": n["type"], "title": n.get("title"), "widgets_values": n.get("widgets_values"),
                "inputs": [(i["name"], i["type"], i.get("link"), "widget" in i) for i in n.get("inputs", [])],
                "outputs": [(o["name"], o["type"], sorted(o.get("links") or [])) for o in n.get("outputs", [])],
            }
        return nodes, sorted(tuple(link) for link in graph["links"])

    (saved, saved_links), (want, want_links) = norm(r["saved"]), norm(file)
    differ = {i: (saved.get(i), want.get(i)) for i in set(saved) | set(want) if saved.get(i) != want.get(i)}
    assert not differ, differ
    assert saved_links == want_links
    api = json.loads((REPO / "tests" / "workflows" / f"{stem}.api.json").read_text())
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
    assert strip(r["api"]) == strip(api)


def test_queue_from_the_page_with_tiny_models(browser_run, comfy_server):
    from PIL import Image
    q = browser_run["queue"]
    assert q and not q.get("timeout"), f"no result within the time limit: {q}"
    assert q["status"]["status_str"] == "success", json.dumps(q["status"])[-3000:]
    images = [img for out in q["outputs"].values() for img in out.get("images", [])]
    assert len(images) == 1 and images[0]["subfolder"] == "browser"
    status, body = comfy_server.get(f"/view?filename={images[0]['filename']}&subfolder=browser&type=output")
    assert status == 200
    assert np.asarray(Image.open(BytesIO(body))).shape[:2] == (S.SIZE, S.SIZE)
    assert _relevant(browser_run["console"], "queue") == []
    assert (browser_run["shots"] / "queued.png").stat().st_size > 10_000

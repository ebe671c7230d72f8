"""The real ComfyUI frontend in headless Chromium (playwright-core), twice: the frontend the pinned host ships
("pinned", comfyui-frontend-package 1.32) and the one current ComfyUI ships ("newest", 1.58, served by the pinned
host with --front-end-root). For each: the template browser lists every example workflow; every workflow loads with
no missing node type and no widget problem, the frontend reports exactly the model files a user must fetch, with
their downloads, saves back to the file (in that frontend's own format) and converts to its API copy; the vanilla
workflow (tiny models) is queued from the page and produces a picture.

Every wait is on the frontend's own state (its Pinia stores, read through ``app.extensionManager._p``), never on a
time budget alone: the previous workflow's missing-models dialog is closed and gone from the dialog store before the
next workflow loads. (Pressing Escape closes a 1.32 dialog only after its leave animation; a workflow loaded during
that animation re-shows the same store entry, and the animation's end then removes it: the dialog a slow machine
sometimes never showed.) Each frontend gets its own server, so nothing another test left on the session server (user
settings, model files) changes what it shows.

Needs Chromium (/usr/bin/chromium, or $CHROMIUM), playwright-core in .host/node and the newest frontend in
.host/frontends/: ``bash scripts/install_browser.sh`` installs all three. Without them the tests are skipped (and
listed so), unless COLORIZEDIFFUSION_REQUIRE_BROWSER=1 (CI), which makes that an error. Screenshots go to the
test's tmp dir.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

import e2e_support as S
from colorize_diffusion.devtools import workflows as wf
from server_fixture import PACK_DIR_NAME, REPO, free_port, prepare_base_dir, start_server, stop_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = REPO / ".host" / "node" / "node_modules" / "playwright-core"
NEWEST = re.search(r'^NEWEST_FRONTEND="([^"]+)"', (REPO / "scripts" / "install_browser.sh").read_text(), re.M)[1]
FRONTEND_ROOTS = {"pinned": None, "newest": REPO / ".host" / "frontends" / NEWEST}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEMS = list(wf.WORKFLOWS)
# the first-run template browser, version notices and the minimap stay off: the test opens what it looks at
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.VersionCompatibility.DisableWarnings": True,
            "Comfy.Notification.ShowVersionUpdates": False, "Comfy.Minimap.Visible": False}
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".onnx", ".gguf")
DOWNLOADABLE = (".safetensors", ".sft", ".ckpt", ".pth", ".pt")     # 1.58's isModelDownloadable


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM}"
    if not (PLAYWRIGHT / "package.json").is_file():
        return f"playwright-core not installed in {PLAYWRIGHT.parent}"
    if shutil.which("node") is None:
        return "node (Node.js) not found"
    if not (FRONTEND_ROOTS["newest"] / "index.html").is_file():
        return f"frontend {NEWEST} not installed in {FRONTEND_ROOTS['newest']}"
    return None


if _missing() is not None and os.environ.get("COLORIZEDIFFUSION_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"{_missing()}: run `bash scripts/install_browser.sh` (COLORIZEDIFFUSION_REQUIRE_BROWSER=1 "
                       "makes a missing browser an error instead of a skip)")

pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"{_missing()}: run `bash scripts/install_browser.sh`")

DRIVER = r"""
const fs = require('fs');
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(cfg.playwright);
const MISSING = 'global-missing-models-warning', TEMPLATES = 'global-workflow-template-selector';
const newest = cfg.frontend === 'newest';

// in the page: the frontend's Pinia stores and a dialog's element (1.32: PrimeVue, 1.58: Reka UI)
const HELPERS = () => {
  window.__t = {
    store: (id) => window.app.extensionManager._p._s.get(id),
    dialog: (key) => document.querySelector(`[data-dialog-key="${key}"], .p-dialog[aria-labelledby="${key}"]`),
    anyDialog: () => document.querySelector('[data-reka-dialog-content][data-dialog-key], .p-dialog'),
  };
};

async function until(page, fn, arg, what, timeout = 60000) {
  try { await page.waitForFunction(fn, arg, { timeout, polling: 'raf' }); return true; }
  catch (e) { return `not reached: ${what}`; }
}

async function main() {
  const browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args: cfg.flags });
  const out = { workflows: {}, console: [], queue: null };
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    let phase = 'startup';
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') out.console.push([phase, m.type(), m.text(), (m.location() || {}).url || '']);
    });
    page.on('pageerror', (e) => out.console.push([phase, 'pageerror', String(e), '']));
    await page.addInitScript(HELPERS);
    await page.goto(cfg.url, { waitUntil: 'load' });
    await page.waitForFunction(() => window.app && window.app.graph && window.app.extensionManager &&
      window.app.extensionManager._p && window.LiteGraph &&
      window.LiteGraph.registered_node_types['ColorizeDiffusionApplySketch'], null, { timeout: 120000 });
    out.version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ || null);

    // the template browser, through its command; the pack's own category
    phase = 'templates';
    await page.evaluate((key) => { if (!__t.store('dialog').isDialogOpen(key)) app.extensionManager.command.execute('Comfy.BrowseTemplates'); }, TEMPLATES);
    out.templatesWait = await until(page, ([key, pack]) => __t.store('dialog').isDialogOpen(key) && __t.dialog(key) &&
      __t.dialog(key).innerText.includes(pack), [TEMPLATES, cfg.packTitle], 'the template browser with the pack');
    const entry = page.locator(`[data-dialog-key="${TEMPLATES}"], .p-dialog[aria-labelledby="${TEMPLATES}"]`)
      .getByText(cfg.packTitle, { exact: true }).first();
    if (await entry.count()) await entry.click();
    out.templatesWait = [out.templatesWait, await until(page, ([key, stems]) => stems.every((s) => __t.dialog(key).innerText.includes(s)),
      [TEMPLATES, cfg.stems], 'every workflow in the template browser')];
    out.templates = await page.evaluate((key) => __t.dialog(key).innerText, TEMPLATES);
    await page.screenshot({ path: `${cfg.shots}/template_browser.png` });
    await page.evaluate((key) => __t.store('dialog').closeDialog({ key }), TEMPLATES);
    out.templatesClosed = await until(page, (key) => !__t.store('dialog').isDialogOpen(key) && !__t.anyDialog(), TEMPLATES,
      'the template browser closed');

    for (const stem of cfg.stems) {
      phase = 'load:' + stem;
      // the previous workflow's report is closed and gone from the store before the next workflow loads
      await page.evaluate(([key, newest]) => {
        if (newest) { __t.store('executionError').dismissErrorOverlay(); __t.store('rightSidePanel').closePanel(); }
        else __t.store('dialog').closeDialog({ key });
      }, [MISSING, newest]);
      const closed = await until(page, ([key, newest]) => newest ? !__t.store('executionError').isErrorOverlayOpen
        : !__t.store('dialog').isDialogOpen(key) && !__t.anyDialog(), [MISSING, newest], 'the previous report closed');

      // load; what the frontend decided is missing is in its store when loadGraphData returns
      const loaded = await page.evaluate(async ({ stem, pack, key, newest }) => {
        const file = await (await fetch(`/api/workflow_templates/${pack}/${stem}.json`)).json();
        const missing = file.nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
        await app.loadGraphData(file, true, true, stem);
        let computed;
        if (newest) {
          computed = (__t.store('missingModel').missingModelCandidates || []);
        } else {
          const it = __t.store('dialog').dialogStack.find((d) => d.key === key);
          computed = it ? it.contentProps.missingModels : [];
        }
        return { missing, computed: computed.map((m) => ({ name: m.name, directory: m.directory || null, url: m.url || null })) };
      }, { stem, pack: cfg.pack, key: MISSING, newest });
      const names = loaded.computed.map((m) => m.name);

      // then wait until the frontend shows it: 1.32's dialog, 1.58's Issues panel (opened once the list is surfaced)
      let shown;
      if (newest) {
        shown = await until(page, (n) => n === 0 || (Object.keys(__t.store('missingModel').folderPaths).length > 0 &&
          __t.store('executionError').isErrorOverlayOpen), names.length, 'the missing models surfaced');
        if (names.length) {
          await page.evaluate(() => __t.store('rightSidePanel').openPanel('errors'));
          shown = await until(page, (names) => { const s = document.querySelector('[data-testid="error-group-missing-model"]');
            return s && names.every((n) => s.innerText.includes(n)); }, names, 'the Issues panel listing the models');
        }
      } else {
        shown = await until(page, ([key, names]) => names.length === 0 || (__t.dialog(key) &&
          names.every((n) => __t.dialog(key).innerText.includes(n))), [MISSING, names], 'the Missing Models dialog');
      }
      const r = await page.evaluate(({ fileWidgets, key, newest }) => {
        const flagged = newest ? new Set([...__t.store('missingModel').missingModelNodeIds].map(String)) : new Set();
        const problems = [];
        for (const node of app.graph.nodes) {
          if (node.has_errors && !flagged.has(String(node.id))) problems.push(`${node.type} #${node.id}: has_errors`);
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
        let report;
        if (newest) {
          const s = document.querySelector('[data-testid="error-group-missing-model"]');
          report = { text: s ? s.innerText : '', downloads: s ? [...s.querySelectorAll('[data-testid="missing-model-download"]')]
            .map((b) => b.getAttribute('aria-label')) : [] };
        } else {
          const d = __t.dialog(key);
          report = { text: d ? d.innerText : '', downloads: d ? [...d.querySelectorAll('button')]
            .filter((b) => b.innerText.trim().startsWith('Download')).map((b) => b.innerText.trim()) : [] };
        }
        return { problems, report, dialogs: [...document.querySelectorAll('.p-dialog, [data-reka-dialog-content]')].map((d) => d.innerText.slice(0, 300)),
                 saved: app.graph.serialize(), nodes: app.graph.nodes.length, flagged: [...flagged] };
      }, { fileWidgets: cfg.fileWidgets, key: MISSING, newest });
      r.api = (await page.evaluate(async () => (await app.graphToPrompt()).output));
      Object.assign(r, loaded, { waits: [closed, shown] });
      out.workflows[stem] = r;
      await page.screenshot({ path: `${cfg.shots}/${stem}.png` });
    }

    // queue the test variant (tiny models) from the page, wait for its history entry
    phase = 'queue';
    await page.evaluate(([key, newest]) => {
      if (newest) { __t.store('executionError').dismissErrorOverlay(); __t.store('rightSidePanel').closePanel(); }
      else __t.store('dialog').closeDialog({ key });
    }, [MISSING, newest]);
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
    await page.screenshot({ path: `${cfg.shots}/queued.png` });
  } finally {
    await browser.close();
  }
  process.stdout.write('\n@@RESULT@@' + JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def _frontend_version(frontend: str) -> str:
    if frontend == "newest":
        return NEWEST
    import importlib.metadata

    return importlib.metadata.version("comfyui-frontend-package")


@pytest.fixture(scope="module", params=list(FRONTEND_ROOTS))
def browser_run(request, tmp_path_factory):
    """One frontend, on a server of its own, through every workflow (the driver above)."""
    frontend = request.param
    work = tmp_path_factory.mktemp(f"browser_{frontend}")
    shots = work / "screenshots"
    shots.mkdir()
    root = FRONTEND_ROOTS[frontend]
    server = start_server(prepare_base_dir(work / "comfy_base"), free_port(),
                          ("--front-end-root", str(root)) if root else ())
    try:
        S.prepare_server(server)
        status, body = server.post_json("/settings", SETTINGS)
        assert status == 200, body
        prefix = f"browser_{frontend}/vanilla"
        variant = wf.build("vanilla", S.variant_options("vanilla", filename_prefix=prefix)).to_ui(
            server.get_json("/object_info"))
        (work / "variant.json").write_text(json.dumps(variant))
        (work / "driver.js").write_text(DRIVER)
        cfg = {"url": server.url, "frontend": frontend, "pack": PACK_DIR_NAME, "stems": STEMS, "chromium": CHROMIUM,
               "flags": FLAGS, "playwright": str(PLAYWRIGHT), "shots": str(shots),
               "variant": str(work / "variant.json"), "timeoutMs": 300_000,
               "fileWidgets": sorted(f"{t}.{w}" for t, w in wf.FILE_WIDGETS), "packTitle": PACK_DIR_NAME}
        (work / "config.json").write_text(json.dumps(cfg))
        proc = subprocess.run(["node", str(work / "driver.js"), str(work / "config.json")], capture_output=True,
                              text=True, timeout=600, cwd=work)
        assert proc.returncode == 0, f"browser driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        result = json.loads(proc.stdout.split("@@RESULT@@", 1)[1])
        result.update(shots=shots, frontend=frontend, server=server)
        yield result
    finally:
        stop_server(server)


# ------------------------------------------------------------------------------------------------ expectations
def _file(stem: str) -> dict:
    return json.loads((REPO / "example_workflows" / f"{stem}.json").read_text())


def _widget_models(stem: str) -> set[str]:
    """Model files named by a loader's widget in the workflow (what 1.58 checks against the server's lists)."""
    graph = wf.build(stem)
    return {v for n in graph.nodes for name, v in n.widgets.items()
            if (n.type, name) in wf.FILE_WIDGETS and isinstance(v, str) and v.endswith(MODEL_SUFFIXES)}


def expected_report(stem: str, frontend: str) -> tuple[set[str], set[str]]:
    """(the model files the frontend reports missing, those offered for download) on a server that has none of the
    official files.

    pinned (1.32): every entry of the file's `models` list with a url, each with a Download button.
    newest (1.58): the files a loader widget names; a Download button where the `models` list gives a url on
    huggingface.co or civitai.com and the file has a suffix 1.58 downloads (`.bin` has none)."""
    models = {m["name"]: m for m in _file(stem)["models"]}
    if frontend == "pinned":
        listed = {name for name, m in models.items() if m.get("url")}
        return listed, listed
    listed = _widget_models(stem)
    offered = {n for n in listed if n in models and n.endswith(DOWNLOADABLE) and
               re.match(r"https://(huggingface\.co|civitai\.(com|red))/", models[n].get("url") or "")}
    return listed, offered


def _relevant(console: list, phase_prefix: str, frontend: str) -> list:
    """Console errors/warnings of a phase, minus the noise of a host without network and core templates, and (newest)
    the Jobs API the pinned backend lacks."""
    noise = ("workflow_templates", "Error loading core workflow templates", "favicon",
             "api.comfy.org",     # the frontend's registry look-ups, blocked by the host's CSP (no network)
             "huggingface.co/", "Error fetching file size")   # sizing the downloads (no network)
    newest_only = ("Failed to fetch jobs",         # 1.58's /api/jobs: absent from ComfyUI 0.3.75
                   "Invalid layout total size")   # 1.58's own splitter, when its right-side (Issues) panel opens

    def is_noise(entry):
        _, _, text, url = entry
        if text.startswith("Failed to load resource"):
            return any(n in url for n in ("/templates/", "favicon", "api.comfy.org", "huggingface.co",
                                          "/api/userdata/user.css")) or (frontend == "newest" and "/api/jobs" in url)
        return any(n in text for n in noise) or (frontend == "newest" and any(n in text for n in newest_only))

    return [c for c in console if c[0].startswith(phase_prefix) and not is_noise(c)]


# ------------------------------------------------------------------------------------------------ tests
def test_served_frontend_is_the_one_under_test(browser_run):
    assert browser_run["version"] == _frontend_version(browser_run["frontend"])


def test_template_browser_lists_the_workflows(browser_run):
    assert browser_run["templatesWait"] == [True, True], browser_run["templatesWait"]
    text = browser_run["templates"]
    assert PACK_DIR_NAME in text, text[:2000]
    for stem in STEMS:
        assert stem in text, f"{stem} not offered by the template browser"
    assert (browser_run["shots"] / "template_browser.png").stat().st_size > 10_000
    assert browser_run["templatesClosed"] is True


@pytest.mark.parametrize("stem", STEMS)
def test_example_workflow_loads_in_frontend(browser_run, stem):
    r = browser_run["workflows"][stem]
    frontend = browser_run["frontend"]
    assert r["missing"] == [], f"missing node types: {r['missing']}"
    assert r["problems"] == [], r["problems"]
    # this server has none of the official files: the frontend reports what a user must fetch, and offers downloads
    listed, offered = expected_report(stem, frontend)
    assert r["waits"] == [True, True], r["waits"]
    assert sorted(m["name"] for m in r["computed"]) == sorted(listed), r["computed"]
    for name in listed:
        assert name in r["report"]["text"], (name, r["report"]["text"])
    if frontend == "pinned":
        assert len(r["report"]["downloads"]) == len(offered), r["report"]
        models = {m["name"]: m for m in _file(stem)["models"]}
        assert all(m["directory"] == models[m["name"]]["directory"] for m in r["computed"]), r["computed"]
        assert [d for d in r["dialogs"] if "Missing" in d and not d.startswith("Missing Models")] == [], r["dialogs"]
    else:
        assert sorted(r["report"]["downloads"]) == sorted(f"Download {n}" for n in offered), r["report"]
        # the nodes outlined in red are the loaders of the reported files
        flagged_types = {n.type for n in wf.build(stem).nodes if set(n.widgets.values()) & listed}
        saved_types = {n["id"]: n["type"] for n in r["saved"]["nodes"]}
        assert {saved_types[int(i)] for i in r["flagged"]} == flagged_types
    errors = _relevant(browser_run["console"], f"load:{stem}", frontend)
    assert errors == [], "\n".join(map(str, errors))
    assert (browser_run["shots"] / f"{stem}.png").stat().st_size > 10_000


@pytest.mark.parametrize("stem", STEMS)
def test_frontend_saves_and_exports_the_same_graph(browser_run, stem):
    """What the frontend saves after loading equals the file (nodes, sockets, links, widget values, the model list),
    read in that frontend's format (1.58 omits empty `widgets_values` and keeps `models` under `extensions`), and
    its API export equals tests/workflows/<stem>.api.json."""
    r = browser_run["workflows"][stem]
    file = _file(stem)

    def norm(graph):
        nodes = {}
        for n in graph["nodes"]:
            nodes[n["id"]] = {
                "type": n["type"], "title": n.get("title"), "widgets_values": n.get("widgets_values") or [],
                "inputs": [(i["name"], i["type"], i.get("link"), "widget" in i) for i in n.get("inputs", [])],
                "outputs": [(o["name"], o["type"], sorted(o.get("links") or [])) for o in n.get("outputs", [])],
            }
        models = graph.get("models") or (graph.get("extensions") or {}).get("models")
        return nodes, sorted(tuple(link) for link in graph["links"]), models

    (saved, saved_links, saved_models), (want, want_links, want_models) = norm(r["saved"]), norm(file)
    differ = {i: (saved.get(i), want.get(i)) for i in set(saved) | set(want) if saved.get(i) != want.get(i)}
    assert not differ, differ
    assert saved_links == want_links
    if browser_run["frontend"] == "newest":      # 1.32 saves no model list at all
        assert saved_models == want_models
    api = json.loads((REPO / "tests" / "workflows" / f"{stem}.api.json").read_text())
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
    assert strip(r["api"]) == strip(api)


def test_queue_from_the_page_with_tiny_models(browser_run):
    from PIL import Image
    server = browser_run["server"]
    q = browser_run["queue"]
    assert q and not q.get("timeout"), f"no result within the time limit: {q}"
    assert q["status"]["status_str"] == "success", json.dumps(q["status"])[-3000:]
    images = [img for out in q["outputs"].values() for img in out.get("images", [])]
    subfolder = f"browser_{browser_run['frontend']}"
    assert len(images) == 1 and images[0]["subfolder"] == subfolder
    status, body = server.get(f"/view?filename={images[0]['filename']}&subfolder={subfolder}&type=output")
    assert status == 200
    assert np.asarray(Image.open(BytesIO(body))).shape[:2] == (S.SIZE, S.SIZE)
    assert _relevant(browser_run["console"], "queue", browser_run["frontend"]) == []
    assert (browser_run["shots"] / "queued.png").stat().st_size > 10_000

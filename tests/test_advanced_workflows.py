"""The advanced example workflows (every control node of their family) in-process with the tiny models: what they
preview (attention maps, the reference mask over the reference, the manipulation's bands) and that each control
node acts. Running every shipped workflow in-process and over HTTP: tests/test_workflows_e2e.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import e2e_support as S
from colorize_diffusion.devtools import workflows as wf
from test_workflows_e2e import STEMS, inproc, tiny_vae_file  # noqa: F401 - the in-process runner fixtures

ADVANCED = [s for s in STEMS if wf.WORKFLOWS[s].advanced]
# per advanced workflow: a widget of a control node and a value that must change the picture
CONTROLS = [("ColorizeDiffusionReferencePad", "pad_scale", 1.5),
            ("ColorizeDiffusionReferenceStrength", "reference_strength", 0.3),
            ("ColorizeDiffusionBlockReferenceStrength", "block_3", 0.0),
            ("ColorizeDiffusionGuidanceWindow", "end", 0.4),
            ("ColorizeDiffusionManipulationText", "text", "[target] green hair; [anchor] none; [control] hair; "
             "[scale] 9.0; [enhanced] ; [ts0] 0.0; [ts1] 0.1; [ts2] 0.2; [ts3] 0.3")]


@pytest.mark.parametrize("stem", ADVANCED)
def test_advanced_workflow_previews_and_controls_act(inproc, stem):
    """The advanced graphs' looks inside: one attention map per transformer block drawn on the reference, the
    reference mask tinted over the reference, the manipulation's bands (SD2.1); and each control node acts: another
    value of its widget gives another picture."""
    import folder_paths

    graph = wf.build(stem, S.variant_options(stem))
    api = graph.to_api()
    result = inproc.run(api)
    by_title = {}
    for n in graph.find("PreviewImage"):
        by_title[n.title] = [S.load_png(Path(folder_paths.get_temp_directory()) / i["subfolder"] /
                                        i["filename"]) for i in result.outputs[str(n.id)]["images"]]
    reference = S.load_png(inproc.root / "input" / "reference.png")
    maps = by_title["Attention maps"]
    assert len(maps) > 1 and all(m.shape == reference.shape for m in maps)
    assert len({m.tobytes() for m in maps}) > 1, "every block drew the same map"
    (overlay,) = by_title["Reference mask"]
    assert overlay.shape == reference.shape and not np.array_equal(overlay, reference)
    if "ColorizeDiffusionVisualizeManipulation" in graph.node_types:
        (bands,) = by_title["Manipulation bands"]
        assert bands.shape == reference.shape
    base = [S.load_png(p) for p in result.image_files(kinds=("output",))]
    assert len(base) == 1
    tried = 0
    for node_type, widget, value in CONTROLS:
        nodes = [nid for nid, n in api.items() if n["class_type"] == node_type]
        if not nodes:
            continue
        changed = json.loads(json.dumps(api))
        changed[nodes[0]]["inputs"][widget] = value
        other = [S.load_png(p) for p in inproc.run(changed).image_files(kinds=("output",))]
        assert not np.array_equal(base[0], other[0]), f"{stem}: {node_type}.{widget} = {value!r} changed nothing"
        tried += 1
    assert tried == (4 if "ColorizeDiffusionManipulationText" in graph.node_types else 3)

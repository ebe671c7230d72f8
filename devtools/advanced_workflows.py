"""The advanced example workflows: one graph per product line (SD2.1 v2, XL v2) that shows the nodes the mode graphs
leave out: a line extractor, Reference Pad, the reference mask previewed by Mask Overlay, the Background-only
Reference feeding the Background Encoder, the reference's strength (SD2.1: Block Reference Strength, the accurate
per-block control; XL: Reference Strength's level sliders), the Guidance Window, text manipulation in the app's text
form with its Visualize (SD2.1), and the Attention Map of the result.

`build_advanced` fills a Graph that devtools/workflows.py created (the same Options: the tests run these graphs with
the tiny models like every other workflow). Every value is the official app's default, except where a node would
then do nothing visible (noted where it is set).
"""
from __future__ import annotations

from ..model_patches.colorize_diffusion.families import FAMILIES
from .graph import (_BLUE, _GREEN, _PURPLE, Graph, model_nodes, reference_mask_node, sampler_nodes,
                    sketch_mask_node)
from .pictures import picture_node

# The app's text form of one manipulation row (the same row as the text_and_injection_v2 workflow's)
MANIPULATION_TEXT = ("[target] a blue dress; [anchor] a red dress; [control] dress; [scale] 3.0; [enhanced] ; "
                     "[ts0] 0.5; [ts1] 0.55; [ts2] 0.65; [ts3] 0.95")


def build_advanced(g: Graph, o, family: str, xl: bool, checkpoint: str, size_base: int) -> Graph:
    """Fill `g` (an advanced WorkflowSpec's graph) with `o` (workflows.Options, XL defaults already applied)."""
    resampling = "pillow" if xl else "tensor"

    # inputs -----------------------------------------------------------------------------------------------
    sketch_img = picture_node(g, o.sketch, "Sketch", _GREEN)
    ref_img = picture_node(g, o.reference, "Reference", _GREEN)

    # models -----------------------------------------------------------------------------------------------
    ckpt, clip, vae, tagger = model_nodes(g, o, checkpoint, xl)
    tower = None if xl else g.add("ColorizeDiffusionLoadTextTower", 1, {"clip_name": o.text_tower,
                                                                        "heads": o.text_heads}, color=_BLUE)

    # preparation: lines, reference padding, masks, the background-only reference, text rows ---------------
    lines = g.add("ColorizeDiffusionExtractLineart", 2, {"method": "standard", "resolution": 512,
                                                         "output_size": "input", "invert_input": False},
                  {"image": (sketch_img, 0)}, title="Line extractor (standard: no weights)")
    sketch = g.add("ColorizeDiffusionPrepareSketch", 2,
                   {"method": "none", "polarity": "auto", "width": o.width, "height": o.height,
                    "size_base": size_base, "monochrome": "auto", "extract_size": 512, "resampling": resampling},
                   {"image": (lines, 0), "transparency_mask": (sketch_img, 1)})
    padded = g.add("ColorizeDiffusionReferencePad", 2, {"pad_scale": 1.0}, {"image": (ref_img, 0)})
    ref_mask = reference_mask_node(g, o, padded, xl)
    background_only = g.add("ColorizeDiffusionBackgroundOnlyReference", 2, {"threshold": 0.5},
                            {"image": (padded, 0), "mask": (ref_mask, 0)})
    reference = g.add("ColorizeDiffusionEncodeReference", 2, {}, {"clip_vision": (clip, 0), "image": (padded, 0),
                                                                 **tagger})
    background = g.add("ColorizeDiffusionEncodeReference", 2, {},
                       {"clip_vision": (clip, 0), "image": (background_only, 0), **tagger}, title="Encode Background")
    if tower is not None:
        rows = g.add("ColorizeDiffusionManipulationText", 2, {"text": MANIPULATION_TEXT,
                                                              "official_enhanced_parsing": True})
        reference = g.add("ColorizeDiffusionManipulateReference", 2, {},
                          {"reference": (reference, 0), "text_tower": (tower, 0), "manipulations": (rows, 0)})
    sketch_mask = sketch_mask_node(g, o, sketch, size_base, resampling)

    # encoders and the reference's controls --------------------------------------------------------------
    applied = g.add("ColorizeDiffusionApplySketch", 3, {"sketch_strength": o.sketch_strength,
                                                        "samples_per_sketch": 1},
                    {"model": (ckpt, 0), "colorizer": (ckpt, 1), "sketch": (sketch, 3), "reference": (reference, 0)},
                    color=_PURPLE)
    pair = {"positive": (applied, 1), "negative": (applied, 2)}

    def chained(node_type: str, widgets: dict, links: dict | None = None) -> None:
        nonlocal pair
        nid = g.add(node_type, 3, widgets, {**pair, **(links or {})}, color=_PURPLE)
        pair = {"positive": (nid, 0), "negative": (nid, 1)}

    chained("ColorizeDiffusionSplitAttention",
            {"threshold": o.sketch_mask_threshold, "foreground_strength": 1.0, "background_strength": 1.0,
             "merge_scale": o.merge_scale, "foreground_enhance": False, "strengths_all_families": False},
            {"sketch_mask": (sketch_mask, 0)})
    bg_links = {"vae": vae, "background": (background, 0)}
    if family == "xlv2":          # the ReferenceNet reads the reference's mask too
        bg_links["reference_mask"] = (ref_mask, 0)
    chained("ColorizeDiffusionBackgroundEncoder",
            {"reference_mask_threshold": o.reference_mask_threshold, "background_factor": o.background_factor,
             "latent_copy": False}, bg_links)
    if xl:      # the XL app's level sliders (encoder / low level)
        chained("ColorizeDiffusionReferenceStrength", {"reference_strength": 1.0, "encoder_scale": 1.0,
                                                       "color_scale": 1.0, "semantics_scale": 1.0,
                                                       "scale_all_blocks": False})
    else:       # SD2.1: the accurate crossattn control, one slider per transformer block (it replaces the level
        #         sliders of Reference Strength, as the app's checkbox does: the two are alternatives)
        chained("ColorizeDiffusionBlockReferenceStrength",
                {**{f"block_{i}": 1.0 for i in range(16)}, "official_slider_shift": True})
    # the official apps honour the window for v1 and XL only: all_families applies it to v1.5/v2 too
    chained("ColorizeDiffusionGuidanceWindow", {"start": 0.0, "end": 1.0, "no_guidance_start": -0.05,
                                                "no_guidance_end": -0.05,
                                                "all_families": not FAMILIES[family].guidance_window})

    # sampler --------------------------------------------------------------------------------------------
    samples = sampler_nodes(g, o, (applied, 0), pair, applied)

    # output and the looks inside ------------------------------------------------------------------------
    image = g.add("VAEDecode", 5, {}, {"samples": (samples, 0), "vae": vae})
    g.add("SaveImage", 5, {"filename_prefix": o.filename_prefix or f"ColorizeDiffusion/{g.stem}"},
          {"images": (image, 0)})
    # the node's default cell (32, 32); the middle of a small picture when the size is set (the tests' 64x64)
    row, col = (min(32, o.height // 32) if o.height else 32), (min(32, o.width // 32) if o.width else 32)
    maps = g.add("ColorizeDiffusionAttentionMap", 5,
                 {"attention": "cross", "query_row": row, "query_col": col, "blocks": "all", "heads": "mean",
                  "step": 0.95, "seed": 0},
                 {"model": (applied, 0), **pair, "latent": (samples, 0), "picture": (image, 0),
                  "reference": (padded, 0)})
    g.add("PreviewImage", 5, {}, {"images": (maps, 0)}, title="Attention maps")
    overlay = g.add("ColorizeDiffusionMaskOverlay", 5, {"mode": "tint", "threshold": 0.5, "opacity": 0.5,
                                                        "color": "#ff0000"},
                    {"image": (padded, 0), "mask": (ref_mask, 0)})
    g.add("PreviewImage", 5, {}, {"images": (overlay, 0)}, title="Reference mask")
    if tower is not None:
        bands = g.add("ColorizeDiffusionVisualizeManipulation", 5,
                      {"control": "dress", "threshold_0": 0.5, "threshold_1": 0.55, "threshold_2": 0.65,
                       "threshold_3": 0.95},
                      {"image": (padded, 0), "clip_vision": (clip, 0), "text_tower": (tower, 0),
                       "manipulations": (rows, 0)})
        g.add("PreviewImage", 5, {}, {"images": (bands, 0)}, title="Manipulation bands")
    return g

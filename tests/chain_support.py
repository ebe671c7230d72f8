"""Wiring the pack's nodes in-process as a graph would: Apply Sketch and the encoder nodes a mode needs."""
from __future__ import annotations

from colorize_diffusion.model_patches.colorize_diffusion.modes import ModeParts, official_mode
from colorize_diffusion.nodes import node_classes

NODES = node_classes()


def node(node_id: str, **inputs):
    """Run node `node_id` the way the executor does (keyword inputs) and return its outputs."""
    return NODES[node_id].execute(**inputs)


def chain(ckpt, sketch, reference, mode: str | ModeParts = "vanilla", *, vae=None, clip_vision=None,
          sketch_mask=None, reference_mask=None, background=None, sketch_strength=1.0, samples_per_sketch=1,
          threshold=0.05, merge_scale=0.0, background_factor=1.0):
    """(model, positive, negative, latent) of Apply Sketch followed by the nodes of `mode`."""
    parts = mode if isinstance(mode, ModeParts) else official_mode(mode, ckpt.colorizer.family)
    model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                   sketch=sketch, reference=reference, sketch_strength=sketch_strength,
                                   samples_per_sketch=samples_per_sketch)
    if parts.split:
        pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=sketch_mask,
                        threshold=threshold, merge_scale=merge_scale, foreground_enhance=parts.foreground)
    if parts.background:
        pos, neg = node("ColorizeDiffusionBackgroundEncoder", positive=pos, negative=neg, vae=vae,
                        clip_vision=clip_vision, reference_mask=reference_mask, background=background,
                        background_factor=background_factor)
    if parts.style:
        pos, neg = node("ColorizeDiffusionStyleEncoder", positive=pos, negative=neg, vae=vae, background=background,
                        merge_scale=merge_scale)
    return model, pos, neg, latent

"""ColorizeDiffusion's own networks, built from ComfyUI `operations` layers and loaded from state dicts."""

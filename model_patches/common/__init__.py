"""What both products use: CLIP vision towers and their tokens, the UNet patch helpers."""

"""Sketch, mask and reference preparation as the official app does it (plain torch, numpy and OpenCV)."""

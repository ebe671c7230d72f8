"""The model code of the pack, one package per product (`colorize_diffusion/`, `colorflow/`) over a small shared
base (`common/`)."""

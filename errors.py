"""Errors raised for bad user input, worded in model and node terms."""


class ColorizerLoadError(ValueError):
    """A checkpoint or auxiliary file cannot be loaded as what the node expects."""


class ColorizerInputError(ValueError):
    """A node received inputs that do not fit together (sizes, families, missing pieces)."""

"""audioclf: clips in, a classifier out. API: `from audioclf import load_model`."""

import importlib

__version__ = "0.1.0"
__all__ = ["Event", "Labeling", "Model", "Prediction", "WindowResult", "load_model"]


def __getattr__(name):  # lazy
    if name in __all__:
        return getattr(importlib.import_module("audioclf.inference"), name)
    raise AttributeError(name)

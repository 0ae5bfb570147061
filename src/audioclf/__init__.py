"""audioclf: sound clips in, a trained, evaluated, quantized audio classifier out.

The inference API (torch-free): `from audioclf import load_model` — see `audioclf.inference`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Event", "Labeling", "Model", "Prediction", "WindowResult", "load_model"]


def __getattr__(name: str) -> Any:
    # lazy: `import audioclf` (every stage does) must not pull in soundfile/scipy/onnxruntime
    if name in __all__:
        from audioclf import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'audioclf' has no attribute {name!r}")

"""Model registry: one file per architecture in this folder, found by name.

A model file declares a frozen params dataclass (its hyperparameters, `train.model_params.<name>`
in params.yaml) and a builder `(in_channels, n_classes, params) -> nn.Module` decorated with
`@register(name, params=..., head=...)`. This package and the model files are torch-free at import
(builders import torch inside), so params validation lists the names and checks the params before
torch loads. `audioclf.network` wraps a built net with the training normalisation.

Every module here whose name does not start with `_` is imported on first use, so a new model is
one new file; dvc.yaml lists this folder as a dependency of the stages that train or load models.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audioclf.errors import AudioclfError


@dataclass(frozen=True)
class Architecture:
    name: str
    params: type  # frozen dataclass: the model's hyperparameters, defaults = the documented ones
    build: Callable[[int, int, Any], Any]  # (in_channels, n_classes, params) -> nn.Module
    head: str  # attribute of the net holding the classifier head (trained during freeze_epochs)


_REGISTRY: dict[str, Architecture] = {}
_discovered = False


def register(name: str, *, params: type, head: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@register("name", params=NameParams, head="fc")` on a builder adds an architecture."""

    def add(build: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].build is not build:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = Architecture(name, params, build, head)
        return build

    return add


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")


def architectures() -> dict[str, Architecture]:
    """Every registered architecture by name (importing this folder's model files once)."""
    _discover()
    return dict(_REGISTRY)


def get(name: str, key: str = "params: `train.model`") -> Architecture:
    """The architecture called `name`; otherwise one line naming `key` and the choices."""
    known = architectures()
    if name not in known:
        raise AudioclfError(f"{key} is {name!r}; choose one of {', '.join(sorted(known))}")
    return known[name]

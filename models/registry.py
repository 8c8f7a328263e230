"""Registry of model builders: ``kind`` (``denoiser`` or ``classifier``) and ``name``.

A builder is a pure function ``build(input_shape, n_outputs, **kwargs) -> keras.Model``
(denoisers take ``build(input_shape, **kwargs)``: output shape = input shape) registered
with its ``search_space(hp)``, whose defaults equal the builder's keyword defaults. The file
name, the registry key and ``model.name`` are the same string.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import Any

KINDS = ("denoiser", "classifier")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    kind: str
    name: str
    build: Callable[..., Any]
    search_space: Callable[[Any], dict[str, Any]]
    input_kind: str
    """Which examples the model consumes: ``window`` (denoise), ``segment`` (1-D, any leads),
    ``sequence`` (scalogram beat sequences) or ``any1d`` (segments and PTB-XL records)."""
    preset_of: str | None = None
    preset_kwargs: tuple[tuple[str, Any], ...] = ()

    def default_kwargs(self) -> dict[str, Any]:
        """Keyword defaults of the builder (after the preset's overrides)."""
        sig = inspect.signature(self.build)
        out = {
            k: p.default
            for k, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        }
        out.update(dict(self.preset_kwargs))
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        merged = {**dict(self.preset_kwargs), **kwargs}
        model = self.build(*args, **merged)
        if self.preset_of is not None:
            model.name = self.name  # presets carry their own name
        return model


_REGISTRY: dict[str, dict[str, ModelSpec]] = {k: {} for k in KINDS}
_LOADED = False


def register(
    name: str,
    *,
    kind: str,
    search_space: Callable[[Any], dict[str, Any]],
    input_kind: str,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a builder under ``(kind, name)``; duplicates raise."""
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY[kind]:
            raise KeyError(f"{kind} {name!r} is already registered")
        _REGISTRY[kind][name] = ModelSpec(kind, name, fn, search_space, input_kind)
        return fn

    return deco


def register_preset(
    name: str, *, base: str, kind: str, description: str = "", **preset_kwargs: Any
) -> None:
    """Registers a named variant of a builder with some keyword arguments fixed."""
    spec = _REGISTRY[kind][base]
    if name in _REGISTRY[kind]:
        raise KeyError(f"{kind} {name!r} is already registered")
    _REGISTRY[kind][name] = dataclasses.replace(
        spec, name=name, preset_of=base, preset_kwargs=tuple(sorted(preset_kwargs.items()))
    )


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        importlib.import_module("models.denoisers")
        importlib.import_module("models.classifiers")
        _LOADED = True


def get(kind: str, name: str) -> ModelSpec:
    """Returns the spec of a registered model; unknown names raise with the known list."""
    if kind not in KINDS:
        raise KeyError(f"unknown model kind {kind!r}; known: {list(KINDS)}")
    _load_all()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise KeyError(
            f"unknown {kind} {name!r}; registered: {sorted(_REGISTRY[kind])}"
        ) from None


def names(kind: str) -> list[str]:
    _load_all()
    return sorted(_REGISTRY[kind])


def build(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    return get(kind, name)(*args, **kwargs)

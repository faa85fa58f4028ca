"""The fusion-method registry with its built-in entries loaded (methods.py, learned.py): look methods up here."""
from __future__ import annotations

from emotion_fusion.errors import InputError

from . import learned, methods  # noqa: F401  (each registers its entries on import)
from .registry import METHODS, FusionMethod


def available_methods() -> list[str]:
    """The registered method names, built-in ones first."""
    return list(METHODS)


available_fusion_methods = available_methods   # the package-level name (ef.available_fusion_methods)


def get_methods(names=None) -> list[FusionMethod]:
    """The entries for `names` (None: all), in the given order; an unknown name lists the valid ones."""
    if names is None:
        return list(METHODS.values())
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise InputError(f"unknown fusion method(s) {unknown or names}; choose from: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise InputError(f"fusion methods {names} name one method twice; give each once")
    return [METHODS[n] for n in names]

"""emotion_fusion: ResNet-50 faces + CLIP/MiniLM texts, combined by weighted late fusion.

The public API is a handful of functions (in the style of `clip.load`). They are imported lazily so
that `import emotion_fusion` (and the `fuse` CLI) never pays for torch.
"""
from importlib import import_module

from .errors import InputError
from .labels import CLASSES

__version__ = "0.1.0"

_LAZY = {
    "load_fer2013": "data",
    "load_goemotions": "data",
    "make_pairs": "pairing",
    "load_image_model": "image",
    "load_text_model": "text",
    "fuse": "fusion",
    "evaluate": "metrics",
    "run": "pipeline",
    "Config": "config",
    "demo": "demo",
}

__all__ = ["CLASSES", "InputError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'emotion_fusion' has no attribute {name!r}")

"""Public names of a package that live in its submodules, imported on first use.

`import emotion_fusion` and the `fuse` CLI must not pay for torch, matplotlib or gradio; a package's
`__init__` therefore lists where each public name lives and imports that module only when asked.
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """`(__getattr__, __dir__)` for `package`, whose public `name` lives in `package.where[name]`."""

    def __getattr__(name: str):
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list:
        return sorted(where)

    return __getattr__, __dir__

"""The fusion-method registry: a name -> entry map, one entry per method (`@register_fusion`).

A method is fitted on validation pairs and then gives a fused score for any face x text pair. Every
method here is split the same way, so the all-pairs estimand (every same-class face x text pair) is
computed without building 2.5 million paired inputs: a per-face part, a per-text part and a `combine`
that broadcasts, so `combine(face[:, None], text[None, :])` scores a whole class block at once. A
first layer on concatenated inputs is such a split (W [a; b] = W_a a + W_b b).

Add one with a fit function that returns a `Fitted` (a ten-line example is in the README):

    @register_fusion("max_conf", label="the more confident branch alone")
    def _fit(items, draws, settings, seed):
        return Fitted(face=lambda it: it.pv, text=lambda it: it.pt, space="prob",
                      combine=lambda a, b: np.where(a.max(-1, keepdims=True) >= b.max(-1, keepdims=True), a, b))

Pure numpy; no model is loaded (a method that `needs` embeddings reads the cached ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from emotion_fusion.errors import InputError

from .fusion import _log

NEEDS = ("probabilities", "embeddings")
SPACES = ("logit", "prob")


@dataclass(frozen=True)
class Items:
    """One split's per-item inputs: faces (probabilities `pv`, labels `yv`, embeddings `ev`) and texts
    (`pt`, `yt`, `et`); the embeddings are None unless a method needs them."""
    pv: np.ndarray
    yv: np.ndarray
    pt: np.ndarray
    yt: np.ndarray
    ev: np.ndarray | None = None
    et: np.ndarray | None = None

    @property
    def lv(self) -> np.ndarray:
        return _log(self.pv)

    @property
    def lt(self) -> np.ndarray:
        return _log(self.pt)

    def subset(self, faces: np.ndarray, texts: np.ndarray) -> "Items":
        """The items at these face and text indices (in that order)."""
        pick = lambda a, i: None if a is None else a[i]  # noqa: E731
        return Items(self.pv[faces], self.yv[faces], self.pt[texts], self.yt[texts], pick(self.ev, faces),
                     pick(self.et, texts))

    def split_dict(self) -> dict:
        """The checked-split form of `stats` (pv, y, pt, yt)."""
        return {"pv": self.pv, "y": self.yv, "pt": self.pt, "yt": self.yt}


@dataclass(frozen=True)
class Fitted:
    """A fitted method: `face(items)` (n, ...) and `text(items)` (m, ...) per-item parts, and `combine(a, b)`
    -> scores (..., 7) for parts that broadcast (aligned pairs, or a face x text grid). `space`: "logit"
    (log-probabilities up to a constant per pair) or "prob" (probabilities). `params`: what was fitted,
    JSON-able, for the table."""
    face: Callable[[Items], np.ndarray]
    text: Callable[[Items], np.ndarray]
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray]
    space: str = "logit"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.space not in SPACES:
            raise InputError(f"Fitted.space {self.space!r}: choose one of {', '.join(SPACES)}")

    def log_proba(self, scores: np.ndarray) -> np.ndarray:
        """Fused log-probabilities from `combine`'s scores."""
        if self.space == "prob":
            return _log(scores)
        z = scores - scores.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


FitFn = Callable[[Items, np.ndarray, dict, int], Fitted]


@dataclass(frozen=True)
class FusionMethod:
    """A registry entry. `fit(items, draws, settings, seed)`: `draws` (R, n_faces) are validation pairings
    (face i with text draws[r, i]); `settings` one of `settings` (more than one: chosen by cross-fitting on
    validation); `needs` "probabilities" and/or "embeddings"; `fit_draws` how many draws the fit reads
    (None: all given); `fitted_on` says in words what is learned and from what."""
    name: str
    fit: FitFn
    label: str
    needs: tuple[str, ...] = ("probabilities",)
    settings: tuple[dict, ...] = ({},)
    fit_draws: int | None = None
    fitted_on: str = "nothing (no parameters)"


METHODS: dict[str, FusionMethod] = {}


def register_fusion(name: str, *, label: str, needs=("probabilities",), settings=({},), fit_draws: int | None = None,
                    fitted_on: str = "nothing (no parameters)"):
    """Decorator: register `fit` as fusion method `name` (see FusionMethod)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"fusion method name {name!r} must be an identifier (letters, digits, _)")
    bad = [n for n in needs if n not in NEEDS]
    if bad or not needs:
        raise InputError(f"fusion method {name!r} needs {list(needs)}; choose from {', '.join(NEEDS)}")
    if not settings:
        raise InputError(f"fusion method {name!r} has no settings; give at least ({{}},)")

    def add(fit: FitFn) -> FitFn:
        if name in METHODS:
            raise InputError(f"fusion method {name!r} is already registered; pick another name")
        METHODS[name] = FusionMethod(name, fit, label, tuple(needs), tuple(dict(s) for s in settings), fit_draws,
                                     fitted_on)
        return fit
    return add

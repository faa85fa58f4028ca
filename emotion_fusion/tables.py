"""One formatting layer for every table a reader sees: the notebook's, the report's and the CLI's.

    pct(0.6512)                      -> "65.1"
    interval(0.6512, (0.632, 0.67))  -> "65.1 [63.2, 67.0]"
    interval(0.098, (0.08, 0.115), signed=True) -> "+9.8 [+8.0, +11.5]"
    count(3589.0)                    -> "3,589"
    pvalue(1.5e-155)                 -> "< 0.001"
    pvalue(0.001998, resamples=1000) -> "≤ 0.002"   (a bootstrap p at its floor 2/(B + 1))
    in_words({"images": 604, "texts": 141}) -> "604 images, 141 texts"
    Table(df, title="...", note="...")   # HTML in Jupyter, aligned text in a terminal

Scores arrive as fractions and leave as percent with one decimal; counts are integers with thousands
separators; p-values never print more digits than their resampling or test can carry. The bottom layer of
the package: it imports numpy (pandas lazily) and nothing of emotion_fusion, so data, scoring, runs, original,
report and the CLI can all use it.
"""
from __future__ import annotations

import html
import math
import numbers
import re
from typing import Any, Mapping

import numpy as np

P_FLOOR = 0.001      # below this a p-value is written "< 0.001": more digits would claim a precision no test has


def pct(x: float | None, signed: bool = False) -> str:
    """A fraction as percent with one decimal ("65.1", "+9.8" when `signed`); "–" for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def interval(x: float, ci=None, signed: bool = False) -> str:
    """A fraction and its interval as percent: "65.1 [63.2, 67.0]" (just "65.1" without an interval)."""
    if ci is None or len(ci) != 2:
        return pct(x, signed)
    return f"{pct(x, signed)} [{pct(ci[0], signed)}, {pct(ci[1], signed)}]"


def count(n) -> str:
    """An integer count with thousands separators ("3,589"); a float count must be whole."""
    if isinstance(n, float):
        if not n.is_integer():
            raise ValueError(f"count {n!r} is not a whole number")
        n = int(n)
    return f"{int(n):,}"


def pvalue(p: float, floor: float = P_FLOOR, resamples: int | None = None) -> str:
    """A p-value to read: "< 0.001" below `floor`, three decimals under 0.01 ("0.004"), else two ("0.52").

    With `resamples` B (a bootstrap p, 2(k + 1)/(B + 1)) a p at its own floor 2/(B + 1) is written as a bound,
    "≤ 0.002" at B = 1000: no resampling that size can show a smaller one."""
    if p < floor:
        return f"< {floor:g}"
    if resamples is not None and p <= 2 / (resamples + 1) * (1 + 1e-9):
        return f"≤ {_decimals(2 / (resamples + 1), up=True)}"
    return _decimals(p)


def _decimals(p: float, up: bool = False) -> str:
    """Three decimals under 0.01, else two; `up` rounds up (a bound stays true when shown)."""
    digits = 3 if p < 0.0095 else 2
    return f"{math.ceil(p * 10 ** digits - 1e-9) / 10 ** digits if up else p:.{digits}f}"


_SUPER = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def setting(v) -> str:
    """A setting's value as written in a table or sentence: small numbers as 3×10⁻³ (a raw 0.003 reads as
    a measurement, and 3e-03 as code), other floats in %g."""
    if isinstance(v, float) and 0 < abs(v) < 0.01:
        m, e = f"{v:.0e}".split("e")
        return f"{m}×10{str(int(e)).translate(_SUPER)}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def number(x: float, digits: int = 1) -> str:
    """A plain measurement (seconds, a weight) with `digits` decimals and thousands separators."""
    return f"{x:,.{digits}f}"


def in_words(d: Mapping[str, Any]) -> str:
    """A small dict of counts as words, "604 images, 141 texts" (value first, then its name)."""
    return ", ".join(f"{cell(v)} {k.replace('_', ' ')}" for k, v in d.items())


def cell(v: Any, digits: int = 1) -> str:
    """Any value as a table cell: ints as counts, floats with `digits` decimals, bools as yes/no,
    None as "–", dicts in words, lists joined by commas."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if v is None:
        return "–"
    if isinstance(v, numbers.Integral):     # numpy integers too (np.int64 from a DataFrame)
        return count(v)
    if isinstance(v, numbers.Real):
        return "–" if math.isnan(v) else number(v, digits)
    if isinstance(v, Mapping):
        return in_words(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(cell(x, digits) for x in v)
    return str(v)


class Table:
    """A formatted table: a DataFrame of display strings (`.df`), a title above it and a note below.

    `index=True` shows the DataFrame's index (use it when the index is a label, e.g. the model or the
    class); otherwise the row numbers pandas would print are left out. Jupyter shows the HTML, a terminal
    (and `str`) the aligned text.
    """

    def __init__(self, df, title: str | None = None, note: str | None = None, index: bool = True):
        self.df, self.title, self.note, self.index = df, title, note, index

    def _repr_html_(self) -> str:
        head = f"<h4>{html.escape(self.title)}</h4>" if self.title else ""
        foot = f"<p><small>{html.escape(self.note)}</small></p>" if self.note else ""
        # pandas indents every tag on its own line: in a saved notebook each line is a JSON string of its own,
        # so the whitespace between tags (never shown) is dropped
        body = re.sub(r">\s+<", "><", self.df.to_html(index=self.index, border=0, na_rep=""))
        return head + body + foot

    def to_text(self) -> str:
        """The aligned plain-text form (the CLI's)."""
        lines = [self.title] if self.title else []
        lines.append(self.df.to_string(index=self.index, na_rep=""))
        return "\n".join(lines + ([self.note] if self.note else []))

    def __repr__(self) -> str:
        return self.to_text()

    __str__ = __repr__


def table(records: list[dict], title: str | None = None, note: str | None = None, index=None,
          digits: int = 1) -> Table:
    """Records (one dict per row) as a Table, every value through `cell`; `index`: the column(s) that
    label the rows (shown as the index), or None for no index column."""
    import pandas as pd

    keys = [index] if isinstance(index, str) else list(index or [])
    df = pd.DataFrame.from_records([{k: (v if k in keys else cell(v, digits)) for k, v in r.items()}
                                    for r in records])
    if keys and len(df):
        df = df.set_index(keys)
    return Table(df, title, note, index=bool(keys))

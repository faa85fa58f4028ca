"""Counts for a first look at the data: per split and class, duplicate faces, GoEmotions labels.

`summarize` gives a JSON-able dict (what `python -m emotion_fusion data --json` prints) and
`format_summary` the aligned tables for a terminal.
"""
from __future__ import annotations

import pandas as pd

from emotion_fusion.tables import count

from .fer2013 import FER_SPLITS
from .goemotions import GO_SPLITS
from .labels import CLASSES, GOEMOTIONS_LABELS


def _split_order(splits) -> list[str]:
    known = [s for s in (*FER_SPLITS, *GO_SPLITS) if s in set(splits)]
    return list(dict.fromkeys(known)) + sorted(set(splits) - set(known))


def find_duplicates(fer_df: pd.DataFrame) -> dict:
    """Duplicate images by decoded-pixel hash.

    `within[split]`: images that repeat an earlier image of the same split; `across["a-b"]`: images
    of split a whose pixels equal some image of split b, for every pair of splits present.
    """
    splits = _split_order(fer_df["split"].unique())
    hashes = {s: fer_df.loc[fer_df["split"] == s, "hash"] for s in splits}
    within = {s: int(h.duplicated().sum()) for s, h in hashes.items()}
    across = {f"{a}-{b}": int(hashes[a].isin(set(hashes[b])).sum())
              for i, a in enumerate(splits) for b in splits[i + 1:]}
    return {"within": within, "across": across}


def _counts(df: pd.DataFrame, column: str, names) -> dict[str, dict[str, int]]:
    """{split: {name: count}} in canonical split order, every name listed (zeros included)."""
    return {s: {n: int(c) for n, c in df.loc[df["split"] == s, column].value_counts()
                .reindex(list(names), fill_value=0).items()}
            for s in _split_order(df["split"].unique())}


def summarize(fer_df: pd.DataFrame | None, go_df: pd.DataFrame | None) -> dict:
    """JSON-able counts for both datasets (either may be None): per split and class, duplicates,
    GoEmotions raw label counts, mapped class counts, rows dropped by the multi-label rule, skips."""
    out: dict = {}
    if fer_df is not None:
        out["fer2013"] = {
            "path": fer_df.attrs.get("path"),
            "rows": {s: int(n) for s, n in fer_df["split"].value_counts().reindex(
                _split_order(fer_df["split"].unique())).items()},
            "classes": _counts(fer_df, "label", CLASSES),
            "duplicates": find_duplicates(fer_df),
            "skipped": list(fer_df.attrs.get("skipped", [])),
        }
    if go_df is not None:
        kept = go_df[go_df["y"] >= 0]
        splits = _split_order(go_df["split"].unique())
        out["goemotions"] = {
            "path": go_df.attrs.get("path"),
            "mapping": go_df.attrs.get("mapping"),
            "multi_label": go_df.attrs.get("multi_label"),
            "rows": {s: int((go_df["split"] == s).sum()) for s in splits},
            "go_labels": _counts(go_df.explode("go_labels"), "go_labels", GOEMOTIONS_LABELS),
            "classes": {s: _counts(kept, "label", CLASSES).get(s, dict.fromkeys(CLASSES, 0)) for s in splits},
            "dropped": {s: int(((go_df["split"] == s) & (go_df["y"] < 0)).sum()) for s in splits},
            "skipped": list(go_df.attrs.get("skipped", [])),
        }
    return out


def _table(counts: dict[str, dict[str, int]], index_name: str) -> str:
    table = pd.DataFrame(counts)
    table.loc["total"] = table.sum()
    table.index.name = index_name
    return table.map(count).to_string()     # integer counts with thousands separators, never "397.0"


def _skipped_lines(skipped: list[dict], limit: int = 5) -> list[str]:
    lines = [f"skipped: {len(skipped)}"]
    lines += [f"  {s['source']}: {s['reason']}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return lines


def format_summary(summary: dict) -> str:
    """Readable aligned tables of a `summarize` result, for a terminal."""
    out: list[str] = []
    if "fer2013" in summary:
        fer = summary["fer2013"]
        out += [f"FER2013 ({fer['path']})", _table(fer["classes"], "class"), "",
                "duplicate images (same decoded pixels):"]
        out += [f"  within {s}: {count(n)}" for s, n in fer["duplicates"]["within"].items()]
        out += [f"  {pair.replace('-', ' images also in ')}: {count(n)}"
                for pair, n in fer["duplicates"]["across"].items()]
        out += _skipped_lines(fer["skipped"]) + [""]
    if "goemotions" in summary:
        go = summary["goemotions"]
        out += [f"GoEmotions ({go['path']}; map {go['mapping']}, multi-label rule {go['multi_label']})",
                _table(go["classes"], "class"),
                "dropped by the multi-label rule: "
                + ", ".join(f"{s} {count(n)}" for s, n in go["dropped"].items()), "",
                "raw GoEmotions label counts (a text with several labels counts once per label):",
                _table(go["go_labels"], "go_label")]
        out += _skipped_lines(go["skipped"])
    return "\n".join(out).rstrip() + "\n"

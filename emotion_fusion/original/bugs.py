"""The original's fusion bug, shown: its text head was a softmax over RAW CLIP cosines (no logit scale).

Cosines of one text to the 7 prompts differ by a few hundredths, so that head's probabilities sit near
1/7 each; fused linearly at 0.6 x visual + 0.4 x text, they shift every class by almost the same amount
and the fused argmax is the visual argmax on (nearly) every pair: the "fusion" equals the visual branch.
`bug_table` scores that head against a calibrated one from cached per-pair arrays (numpy only).
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax

from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring.fusion import check_probs, fuse
from emotion_fusion.scoring.metrics import as_labels, macro_f1
from emotion_fusion.tables import Table, count, pct
from emotion_fusion.tables import table as make_table

SEED_WEIGHT = 0.6        # the original's visual share, linear rule, no calibration
HEADS = ("seed_raw", "calibrated")


def _scores(y: np.ndarray, pred: np.ndarray) -> dict:
    return {"accuracy": float(np.mean(y == pred)), "macro_f1": macro_f1(y, pred)}


def bug_table(p_visual, p_text_calibrated, y, *, raw_cosines=None, p_text_raw=None,
              weight: float = SEED_WEIGHT) -> dict:
    """Text alone and fused (linear at `weight`) under the raw-cosine head vs the calibrated head.

    Give the raw head either as `raw_cosines` (N, 7; softmax taken here, scale 1) or as its
    probabilities `p_text_raw`. Per head: text and fused accuracy / macro-F1, the mean top text
    probability, and the pairs whose fused argmax differs from the visual argmax. JSON-able.
    """
    if (raw_cosines is None) == (p_text_raw is None):
        raise InputError("bug_table: give exactly one of raw_cosines= or p_text_raw=")
    if raw_cosines is not None:
        cos = np.asarray(raw_cosines, dtype=np.float64)
        if cos.ndim != 2 or cos.shape[1] != len(CLASSES) or not np.all(np.abs(cos) <= 1 + 1e-6):
            raise InputError(f"raw_cosines must be (N, 7) cosine similarities in [-1, 1], got shape {cos.shape}")
        p_text_raw = softmax(cos, axis=1)
    pv = check_probs(p_visual, "p_visual")
    heads = {"seed_raw": check_probs(p_text_raw, "p_text_raw"),
             "calibrated": check_probs(p_text_calibrated, "p_text_calibrated")}
    y = as_labels(y)
    for name, p in (("p_text_raw", heads["seed_raw"]), ("p_text_calibrated", heads["calibrated"]), ("y", y)):
        if len(p) != len(pv):
            raise InputError(f"{name} has {len(p)} rows but p_visual has {len(pv)}; pass one row per pair")
    visual_pred = pv.argmax(axis=1)
    out = {"weight": float(weight), "rule": "linear", "n_pairs": int(len(y)),
           "visual": _scores(y, visual_pred), "heads": {}}
    for name, pt in heads.items():
        fused_pred = fuse(pv, pt, weight, rule="linear").argmax(axis=1)
        differs = int((fused_pred != visual_pred).sum())
        out["heads"][name] = {"text": _scores(y, pt.argmax(axis=1)), "fused": _scores(y, fused_pred),
                              "text_top_prob_mean": float(pt.max(axis=1).mean()),
                              "fused_differs_from_visual": differs,
                              "fused_differs_share": differs / len(y) if len(y) else 0.0}
    return out


def bug_table_frame(table: dict) -> Table:
    """`bug_table`'s dict as a table to read (a tables.Table): one row per head (text alone, fused) plus visual
    alone, scores and the mean top probability in %, blank cells where a column does not apply; `.df.attrs`
    keeps `n_pairs` (the count column is out of this many pairs)."""
    w = table["weight"]

    def row(head: str, scored: str, score: dict, top_prob=None, differs=None) -> dict:
        return {"head": head, "scored": scored, "accuracy %": pct(score["accuracy"]),
                "macro-F1 %": pct(score["macro_f1"]), "mean top prob %": "" if top_prob is None else pct(top_prob),
                "pairs fused ≠ visual": "" if differs is None else differs}

    rows = [row("—", "visual alone", table["visual"])]
    labels = {"seed_raw": "raw cosines (original)", "calibrated": "calibrated"}
    for name, h in table["heads"].items():
        rows.append(row(labels.get(name, name), "text alone", h["text"], top_prob=h["text_top_prob_mean"]))
        rows.append(row(labels.get(name, name), f"fused {w:g}·visual + {1 - w:g}·text", h["fused"],
                        differs=int(h["fused_differs_from_visual"])))
    return _with_pairs(make_table(rows, index=["head", "scored"], note=f"{count(table['n_pairs'])} pairs; the last "
                                  "column counts those whose fused label is not the visual one."), table["n_pairs"])


def _with_pairs(t: Table, n_pairs: int) -> Table:
    t.df.attrs["n_pairs"] = n_pairs
    return t


def run_bug_table(run_dir, split: str = "test") -> dict:
    """`bug_table` on a finished run's cached outputs (no model): the original's raw-cosine head vs the
    calibrated zero-shot head (the encoder's logit scale, the prompt ensemble, a temperature fitted on
    validation), each alone and fused with the run's visual branch at 0.6, linearly, on the default pairs."""
    d = _outputs(run_dir, split, ("p_text_items_zeroshot", "p_text_items_seed_raw"))
    pairs = d["pairs"]
    return bug_table(d["p_visual"], d["p_text_items_zeroshot"][pairs], d["y"],
                     p_text_raw=d["p_text_items_seed_raw"][pairs])


def original_bug(run_dir, split: str = "test") -> Table:
    """The notebook's "original's bug, shown" table for a finished run (see `run_bug_table`)."""
    return bug_table_frame(run_bug_table(run_dir, split))


# --- The second bug: which epoch's weights were scored ------------------------------------------------
# The original kept `best_model_state = model.state_dict().copy()`: a shallow dict copy whose tensors ARE
# the live parameters, so they kept training and the final `load_state_dict` restored nothing: it
# scored its last epoch (its log: best val loss at epoch 3, val acc 0.42; stopped at epoch 8, 0.60).

def epoch_table(p_best, p_last, p_text_raw, y, *, best_epoch: int, last_epoch: int, scored: str,
                weight: float = SEED_WEIGHT) -> dict:
    """One trained run's faces scored with its best-val-loss weights and with its last epoch's, each
    alone and fused linearly at `weight` with the raw-cosine text head (the original's fusion). JSON-able."""
    if scored not in ("best", "last"):
        raise InputError(f"scored must be 'best' or 'last', got {scored!r}")
    y = as_labels(y)
    pt = check_probs(p_text_raw, "p_text_raw")
    out = {"weight": float(weight), "n_pairs": int(len(y)), "scored": scored, "weights": {}}
    for name, p, epoch in (("best", p_best, best_epoch), ("last", p_last, last_epoch)):
        pv = check_probs(p, f"p_visual_{name}")
        if len(pv) != len(y) or len(pt) != len(y):
            raise InputError(f"{len(pv)} {name} face rows, {len(pt)} text rows, {len(y)} labels; one row per pair")
        fused = fuse(pv, pt, weight, rule="linear").argmax(axis=1)
        out["weights"][name] = {"epoch": int(epoch), "visual": _scores(y, pv.argmax(axis=1)),
                                "fused": _scores(y, fused)}
    return out


def epoch_table_frame(table: dict) -> Table:
    """`epoch_table` to read (a tables.Table): a row per set of weights (visual alone, fused), scores in %;
    `.df.attrs` keeps `n_pairs`. The marked set is the one whose face probabilities this run's own tables
    use (through its own calibration and fusion weight, which this table, fusing raw at its fixed weight,
    does not repeat)."""
    w = table["weight"]
    rows = []
    for name, label in (("best", "best val loss (restored as intended)"), ("last", "last epoch (the original)")):
        t = table["weights"][name]
        for scored, score in (("visual alone", t["visual"]), (f"fused {w:g}·visual + {1 - w:g}·raw text", t["fused"])):
            rows.append({"weights": f"{label}, epoch {t['epoch']}", "scored": scored,
                         "accuracy %": pct(score["accuracy"]), "macro-F1 %": pct(score["macro_f1"]),
                         "the weights this run scored": "yes" if name == table["scored"] else ""})
    return _with_pairs(make_table(rows, index=["weights", "scored"], note=f"{count(table['n_pairs'])} pairs."),
                       table["n_pairs"])


def run_epoch_table(run_dir, split: str = "test") -> dict:
    """`epoch_table` on a finished run's cached outputs (no model): the image branch's best-val-loss and
    last-epoch probabilities kept by the run (`p_image_best`, `p_image_last`) on the default pairs."""
    from emotion_fusion.runs import INFO, read_json, run_dir_path
    d = _outputs(run_dir, split, ("p_image_best", "p_image_last", "p_text_items_seed_raw"))
    hist = read_json(run_dir_path(run_dir) / INFO).get("history", {})
    return epoch_table(d["p_image_best"], d["p_image_last"], d["p_text_items_seed_raw"][d["pairs"]], d["y"],
                       best_epoch=hist.get("best_epoch", 0), last_epoch=hist.get("epochs_run", 0),
                       scored="best" if hist.get("restore_best", True) else "last")


def _outputs(run_dir, split: str, names: tuple[str, ...]) -> dict:
    """RUN_DIR's outputs for `split`, or a one-line InputError when they lack `names`: an `evaluate`d
    dir scored its new test set with the one set of weights its source run kept (its val split is the
    source's own), and a run older than these arrays keeps none of them."""
    from emotion_fusion.runs import INFO, load_outputs, read_json, rerun, run_dir_path
    d = load_outputs(run_dir, split)
    missing = [n for n in names if n not in d]
    if missing:
        src = read_json(run_dir_path(run_dir) / INFO).get("evaluated_from")
        if src:
            raise InputError(f"{run_dir} was made by `evaluate`, which scores its new test set with only the "
                             f"weights and head its source run scored (no {missing[0]}); use split='val' here, "
                             f"or the source run {src}")
        raise InputError(f"{run_dir} has no {missing[0]} outputs (an older run); {rerun(run_dir_path(run_dir))}")
    return d


def original_epoch_bug(run_dir, split: str = "test") -> Table:
    """The notebook's second "original's bugs, shown" table (see `run_epoch_table`)."""
    return epoch_table_frame(run_epoch_table(run_dir, split))

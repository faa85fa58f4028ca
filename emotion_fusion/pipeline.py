"""`run`: the whole experiment, load → split → fit → predict → calibrate → write → score.

The evaluation protocol lives in data/holdout.py (holdout) and original/protocol.py (the original's),
the branches in branches/image.py / text.py, the run directory in runs.py and the scoring in report.py. Branch
outputs are cached in the run dir under a key made from the config (less the scoring knobs), the
datasets' and weight files' signatures: re-running with another fusion weight rebuilds nothing.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotion_fusion import __version__
from emotion_fusion import data as _data
from emotion_fusion import runs as _runs
from emotion_fusion.config import Config
from emotion_fusion.data import holdout as _holdout
from emotion_fusion.report import results_table, score_run, write_results

# Settings that only change how cached branch outputs are fused and scored: not part of the cache key.
SCORING_ONLY = ("fusion_weight", "fusion_rule", "n_boot", "pairing_draws", "progress", "skip_bad")
CACHE_FORMAT = 3    # bump when a code change alters branch outputs: older run dirs are recomputed


@dataclass
class RunResult:
    """What `run` returns: the run directory, its config, results, and what the run recorded."""

    dir: Path
    config: Config
    results: dict
    reused: bool
    title: str = ""
    history: dict = field(default_factory=dict)       # image branch: per-epoch losses, accuracy, lr
    text_heads: dict = field(default_factory=dict)    # candidate text heads and their validation scores
    sizes: dict = field(default_factory=dict)         # faces and texts per modality and split
    timings: dict = field(default_factory=dict)       # seconds per stage
    temperatures: dict = field(default_factory=dict)  # per-branch temperatures fitted on validation
    dropped: dict = field(default_factory=dict)       # train/val items dropped as duplicates of val/test
    summary: dict = field(default_factory=dict)       # data counts per split and class, duplicates
    pairing_summary: dict | None = None               # protocol=seed: pairs per class after each rule

    @classmethod
    def from_dir(cls, run_dir, config: Config, results: dict, reused: bool) -> "RunResult":
        info = _runs.read_json(Path(run_dir) / _runs.INFO)
        keep = {f.name for f in dataclasses.fields(cls)} - {"dir", "config", "results", "reused"}
        return cls(Path(run_dir), config, results, reused, **{k: v for k, v in info.items() if k in keep})

    def table(self):
        """The results table (visual / text / fusion / fusion at the best validation weight), titled."""
        return results_table(self.results)

    def table_text(self) -> str:
        from emotion_fusion.report import format_results
        return format_results(self.results)

    def pairing_table(self):
        """protocol=seed: the pairs per class left after each of the original's rules (a DataFrame);
        None under the holdout protocol, which pairs at random within class."""
        from emotion_fusion.original.protocol import pairing_summary_table
        return pairing_summary_table(self.pairing_summary) if self.pairing_summary else None

    def outputs(self, split: str = "test") -> dict:
        """The cached per-item and per-pair arrays of `split` (see runs.py), plus `p_fused`: the
        default pairs fused at the config's weight with its rule."""
        from emotion_fusion.scoring.fusion import fuse
        d = _runs.load_outputs(self.dir, split)
        return {**d, "p_fused": fuse(d["p_visual"], d["p_text"], self.config.fusion_weight, self.config.fusion_rule)}


def _say(cfg: Config, msg: str) -> None:
    if cfg.progress:
        print(msg, flush=True)


def run(config: Config | None = None, *, fer2013: str | Path | None = None,
        goemotions: str | Path | None = None, out: str | Path = "runs/latest", **overrides: Any) -> RunResult | None:
    """Train and evaluate both branches (or reuse their cached outputs) and write `out`.

    `config` defaults to `Config()` (the `full` profile, as `Config()` itself); keyword `overrides`
    replace any of its settings. Under a launcher (torchrun, accelerate launch) every process calls
    this; they share the image training and only the main process writes `out` and returns a
    RunResult, the others return None (distributed.py).
    """
    from emotion_fusion.branches.distributed import state
    from emotion_fusion.branches.precision import choose_device
    cfg = dataclasses.replace(config or Config(), **overrides)
    fer_path, go_path = _data.resolve_paths(fer2013, goemotions)
    procs = state(choose_device(cfg.device))   # a missing GPU fails now, not after the data
    if not procs.is_main_process:
        return _follow(cfg, fer_path, go_path, out, procs)
    with _runs.writing(out, [fer_path, go_path]) as out:
        key = _key(cfg, fer_path, go_path)
        reused = _runs.is_complete(out, key)
        procs.wait_for_everyone()                # the followers read `reused` before it is invalidated
        if not reused:
            _runs.invalidate(out)
            _compute(cfg, fer_path, go_path, out, key)
        _runs.write_json(out / _runs.CONFIG, cfg.to_dict())
        _runs.write_manifest(out, key)           # last: config.json may carry a new fusion weight
        results = {**score_run(out, draws=cfg.pairing_draws), "reused_cached_outputs": reused}
        write_results(out, results)
    return RunResult.from_dir(out, cfg, results, reused)


def _key(cfg: Config, fer_path: Path, go_path: Path) -> str:
    """The cache key: the config less its scoring knobs, the datasets, weight files and code version."""
    return _runs.fingerprint({k: v for k, v in cfg.to_dict().items() if k not in SCORING_ONLY},
                             _runs.file_signature(fer_path), _runs.file_signature(go_path), _weight_files(cfg), __version__,
                             CACHE_FORMAT)


def _follow(cfg: Config, fer_path: Path, go_path: Path, out, procs) -> None:
    """A non-main process: take its share of the image training when the main one trains; write nothing."""
    cfg = dataclasses.replace(cfg, progress=False)
    reused = _runs.is_complete(_runs.check_out_dir(out, [fer_path, go_path]), _key(cfg, fer_path, go_path))
    procs.wait_for_everyone()
    if not reused:
        _compute(cfg, fer_path, go_path, None, "")
    return None


def _weight_files(cfg: Config) -> list:
    """Signatures of the weight files a run reads (a local path or a file found in a library cache):
    replacing one makes the cache stale. Raises the missing-weights error in seconds, before any data."""
    from emotion_fusion.branches import image as _image
    from emotion_fusion.branches import text as _text
    found = [_image.locate_weights(cfg.image_weights), _text.locate_weights(cfg.text_model, cfg.text_weights)]
    return [_runs.file_signature(p) for p in found if p is not None]


def _compute(cfg: Config, fer_path: Path, go_path: Path, out: Path | None, key: str) -> None:
    """Fit, predict, calibrate and write `out`; `out=None` (a non-main process) stops after the image fit."""
    from emotion_fusion.branches.image import ImageBranch
    from emotion_fusion.branches.text import TextBranch
    from emotion_fusion.scoring.fusion import apply_temperature, fit_temperature
    t0 = time.perf_counter()
    # Both branches are built first: a corrupt or wrong-architecture weight file fails in seconds, not
    # after the data is decoded and the other branch has trained for hours.
    branches = {"image": ImageBranch.from_config(cfg), "text": TextBranch.from_config(cfg)}
    timings: dict[str, float] = {"build_models_s": time.perf_counter() - t0}
    _say(cfg, f"loading FER2013 ({fer_path}) and GoEmotions ({go_path})")
    t = time.perf_counter()
    fer = _data.load_fer2013(fer_path, progress=cfg.progress, skip_bad=cfg.skip_bad,
                             allow_empty_classes=cfg.allow_empty_classes)
    go = _data.load_goemotions(go_path, mapping=cfg.label_map, multi_label=cfg.multi_label, skip_bad=cfg.skip_bad)
    timings["load_data_s"] = time.perf_counter() - t
    if cfg.protocol == "seed":
        from emotion_fusion.original.protocol import seed_split
        split = seed_split(cfg, fer, go)
    else:
        split = _holdout.holdout_split(cfg, fer, go, go_path)
    img, txt, pairs = split["images"], split["texts"], split["pairs"]
    branches["image"].class_weights = split.get("image_class_weights")   # protocol=seed: the original's
    probs = {}
    for name, frames in (("image", img), ("text", txt)):
        t = time.perf_counter()
        _say(cfg, f"{name} branch: fitting on {len(frames['train']):,} train, {len(frames['val']):,} val items")
        branch = branches[name]
        branch.fit(frames["train"], frames["val"])
        if out is None:     # a follower's share (the distributed image training) is done
            return
        branch.save(out / "models")
        probs[name] = {part: branch.predict_proba(frames[part]) for part in ("val", "test")}
        timings[f"{name}_branch_s"] = time.perf_counter() - t
        if name == "image":  # both candidate weights of this one fit, for "the bugs, shown"
            epochs = _epoch_probs(branch, frames, probs["image"])
        if name == "text":   # the calibrated zero-shot and the original's raw head, for "the bug, shown"
            others = {part: branch.comparison_proba(frames[part]) for part in ("val", "test")}
    # temperatures on validation, per item: every val face and every val text counts once
    temps = {b: fit_temperature(p["val"], frames["val"].y.to_numpy()) if cfg.calibrate else 1.0
             for b, p, frames in (("visual", probs["image"], img), ("text", probs["text"], txt),
                                  ("text_zeroshot", {"val": others["val"]["zeroshot"]}, txt))}
    for part in ("val", "test"):
        _runs.write_outputs(out, part, p_image=apply_temperature(probs["image"][part], temps["visual"]),
                            y_image=img[part].y.to_numpy(), y_text=txt[part].y.to_numpy(),
                            p_text_items=apply_temperature(probs["text"][part], temps["text"]), pairs=pairs[part],
                            other_text_heads={"zeroshot": apply_temperature(others[part]["zeroshot"],
                                                                            temps["text_zeroshot"]),
                                              "seed_raw": others[part]["seed_raw"]},   # raw: as the original
                            other_image_weights=epochs[part])
    _holdout.save_examples(out, img, txt, pairs["test"])
    _holdout.save_seen(out, img, txt)
    label = f"image: {branches['image'].label}; text: {branches['text'].label}"
    weights = cfg.weights_status(len(branches["image"].history.get("train_loss", [])))
    title = run_title(cfg, label, split["test_desc"], weights["random_init"])
    timings["total_s"] = time.perf_counter() - t0
    _runs.write_json(out / _runs.INFO, {
        "key": key, "title": title, "branches": label, "weights": weights, "temperatures": temps,
        "history": branches["image"].history, "text_heads": branches["text"].scores, "timings": timings,
        "sizes": {k: {p: int(len(v[p])) for p in v} for k, v in (("images", img), ("texts", txt))},
        "dropped": split.get("dropped", {"images": split.get("duplicates_dropped", 0), "texts": 0}),
        "text_test_split": split["text_test_split"], "summary": _data.summarize(fer, go),
        "pairing_summary": split.get("pairing_summary"),
        "data": {"fer2013": _describe(fer_path), "goemotions": _describe(go_path)}})


# What is random in a RANDOM-INIT branch, in the words of Config.weights_status (the banner uses them too)
_UNTRAINED = {"image": "image backbone never trained",
              "text": "text encoder never trained, only a head on its random features"}


def run_title(cfg: Config, label: str, test_desc: str, random_init: list[str]) -> str:
    """The results title: profile, branches, test set, and RANDOM-INIT when a branch is used untrained
    from random weights (`random_init`, from `Config.weights_status`), or its weight files are declared
    random (`weights_declared_random`: the loader cannot tell a random file in a real format from a
    trained one). A model trained from random initialisation is "trained from scratch", not RANDOM-INIT."""
    title = f"{cfg.profile} profile — {label} — test = {test_desc}"
    if random_init:     # every table made from untrained random weights says so
        why = ("weight files declared random" if cfg.weights_declared_random
               else "; ".join(_UNTRAINED[b] for b in random_init))
        title += f" — RANDOM-INIT WEIGHTS ({why}: numbers show the mechanism, not the models' ability)"
    return title


def _epoch_probs(branch, frames: dict, scored: dict) -> dict:
    """Per split, the image probabilities (raw, before any temperature) under the best-val-loss and
    the last epoch's weights of the one fit; the weights the model holds are already in `scored`."""
    hist = branch.history
    own = "best" if hist["restore_best"] else "last"
    other = "last" if own == "best" else "best"
    same = hist["best_epoch"] == hist["epochs_run"]      # one set of weights: nothing more to score
    return {part: {own: scored[part], other: scored[part] if same else branch.proba_with(other, frames[part])}
            for part in ("val", "test")}


def _describe(path: Path) -> str:
    return Path(path).name if Path(path).exists() else str(path)


def load_examples(run_dir) -> dict:
    """The sample faces and example test pairs saved by `run` (for the notebook's gallery)."""
    run_dir = _runs.run_dir_path(run_dir)
    _runs.verify(run_dir)
    return _holdout.read_examples(run_dir)

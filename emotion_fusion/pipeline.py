"""`run`: the whole experiment, load → split → fit → predict → calibrate → write → score.

The evaluation protocol lives in data/holdout.py (holdout) and original/protocol.py (the original's),
the branches in branches/image.py / text.py, the run directory in runs.py and the scoring in report.py. Each
branch's outputs (model, per-item probabilities and embeddings) are cached in the run dir under a key of
their own (groups.SETTING_GROUPS: the shared settings, that branch's settings, the datasets' and its weight
file's signatures): re-running with another fusion weight rebuilds nothing, another text head refits the
text branch only.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotion_fusion import __version__
from emotion_fusion import data as _data
from emotion_fusion import parts as _parts
from emotion_fusion import runs as _runs
from emotion_fusion.config import SETTING_GROUPS, Config, branch_settings
from emotion_fusion.errors import InputError
from emotion_fusion.data import holdout as _holdout
from emotion_fusion.report import results_table, score_run, write_results

CACHE_FORMAT = 4    # bump when a code change alters branch outputs: older run dirs are recomputed


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
    cache: dict = field(default_factory=dict)         # per branch: reused or recomputed, and why

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
    """Train and evaluate both branches (or reuse their cached parts) and write `out`.

    `config` defaults to `Config()` (the `full` profile, as `Config()` itself); keyword `overrides`
    replace any of its settings. Each branch is cached under its own key (`branch_keys`): a run that
    changes only text settings reuses the trained image branch, and the other way round; what each
    branch did is printed and kept in run_info.json's `cache`. Under a launcher (torchrun, accelerate
    launch) every process calls this; they share the image training and only the main process writes
    `out` and returns a RunResult, the others return None (distributed.py).
    """
    from emotion_fusion.branches.distributed import state
    from emotion_fusion.branches.precision import choose_device
    cfg = dataclasses.replace(config or Config(), **overrides)
    fer_path, go_path = _data.resolve_paths(fer2013, goemotions)
    procs = state(choose_device(cfg.device))   # a missing GPU fails now, not after the data
    if not procs.is_main_process:
        return _follow(cfg, fer_path, go_path, out, procs)
    with _runs.writing(out, [fer_path, go_path]) as out:
        keys = branch_keys(cfg, fer_path, go_path)
        reused = _runs.is_complete(out, keys["run"])
        plan = _parts.plan(out, keys, {b: branch_settings(cfg, b) for b in _runs.BRANCHES})
        procs.wait_for_everyone()                # the followers read the cache before it is invalidated
        for b in _runs.BRANCHES:
            _say(cfg, f"{b} branch: {plan[b]['message']}")
        if not reused:
            _runs.invalidate(out)
            _compute(cfg, fer_path, go_path, out, keys, plan)
        else:   # nothing recomputed: run_info says so, the branches' own dates stay
            info = _runs.read_json(out / _runs.INFO)
            _runs.write_json(out / _runs.INFO, {**info, "cache": _cache_info(plan)})
        _runs.write_json(out / _runs.CONFIG, cfg.to_dict())
        _runs.write_manifest(out, keys["run"])   # last: config.json may carry a new fusion weight
        results = {**score_run(out, draws=cfg.pairing_draws), "reused_cached_outputs": reused,
                   "cache": _cache_info(plan)}
        write_results(out, results)
    return RunResult.from_dir(out, cfg, results, reused)


def branch_keys(cfg: Config, fer_path: Path, go_path: Path) -> dict[str, str]:
    """The cache keys: per branch (`image`, `text`) its settings (groups.branch_settings), the datasets'
    signatures, its weight file, the code version; `run` joins both with the assembly settings. Scoring
    knobs are in none of them. Raises the missing-weights error in seconds, before any data."""
    data = [_runs.file_signature(fer_path), _runs.file_signature(go_path)]
    weights = _weight_files(cfg)
    keys = {}
    for b in _runs.BRANCHES:
        # protocol=seed: each branch's items depend on the other's settings (groups.SETTING_GROUPS)
        own = weights if cfg.protocol == "seed" else weights[b]
        keys[b] = _runs.fingerprint(b, branch_settings(cfg, b), data, own, __version__, CACHE_FORMAT)
    assembly = {k: getattr(cfg, k) for k in SETTING_GROUPS["assembly"]}
    keys["run"] = _runs.fingerprint(keys["image"], keys["text"], assembly, __version__, CACHE_FORMAT)
    return keys


def _key(cfg: Config, fer_path: Path, go_path: Path) -> str:
    """The run dir's cache key (both branches and the assembly settings)."""
    return branch_keys(cfg, fer_path, go_path)["run"]


def _cache_info(plan: dict) -> dict:
    return {b: dict(p) for b, p in plan.items()}


def _follow(cfg: Config, fer_path: Path, go_path: Path, out, procs) -> None:
    """A non-main process: take its share of the image training when the main one trains; write nothing."""
    cfg = dataclasses.replace(cfg, progress=False)
    out = _runs.check_out_dir(out, [fer_path, go_path])
    keys = branch_keys(cfg, fer_path, go_path)
    rec = _parts.read_branch_record(out, "image") if out.is_dir() else None
    reuse_image = rec is not None and rec.get("key") == keys["image"]
    procs.wait_for_everyone()
    if not reuse_image:
        _compute(cfg, fer_path, go_path, None, keys, {"image": {"reused": False}, "text": {"reused": True}})
    return None


def _weight_files(cfg: Config) -> dict[str, list]:
    """Per branch, signatures of the weight files it reads (a local path or a file found in a library
    cache): replacing one makes that branch's cache stale. Raises the missing-weights error in seconds."""
    from emotion_fusion.branches import image as _image
    from emotion_fusion.branches import text as _text
    found = {"image": _image.locate_weights(cfg.image_weights),
             "text": _text.locate_weights(cfg.text_model, cfg.text_weights)}
    return {b: [_runs.file_signature(p)] if p is not None else [] for b, p in found.items()}


def _compute(cfg: Config, fer_path: Path, go_path: Path, out: Path | None, keys: dict, plan: dict) -> None:
    """Fit and predict the branches the plan recomputes, then join both cached parts into outputs/ (and
    temperatures, run_info); `out=None` (a non-main process) stops after the image fit."""
    t0 = time.perf_counter()
    todo = [b for b in _runs.BRANCHES if not plan[b]["reused"] and (out is not None or b == "image")]
    # The branches to fit are built first: a corrupt or wrong-architecture weight file fails in seconds,
    # not after the data is decoded and the other branch has trained for hours.
    branches = _build(cfg, todo)
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
    frames = {"image": split["images"], "text": split["texts"]}
    if "image" in branches:
        branches["image"].class_weights = split.get("image_class_weights")   # protocol=seed: the original's
    for name in todo:
        t = time.perf_counter()
        if out is not None:
            _parts.drop_branch_part(out, name)     # an interrupted fit leaves no record vouching for it
        _say(cfg, f"{name} branch: fitting on {len(frames[name]['train']):,} train, "
                  f"{len(frames[name]['val']):,} val items")
        branch = branches[name]
        branch.fit(frames[name]["train"], frames[name]["val"])
        if out is None:     # a follower's share (the distributed image training) is done
            return
        model_file = branch.save(out / "models")
        items = (_image_items if name == "image" else _text_items)(branch, frames[name])
        timings[f"{name}_branch_s"] = time.perf_counter() - t
        _parts.write_branch_part(out, name, keys[name], items, _record(cfg, name, branch, timings[f"{name}_branch_s"]),
                                [model_file.relative_to(out).as_posix()])
    data = {"fer": fer, "go": go, "fer_path": fer_path, "go_path": go_path}
    _assemble(cfg, out, split, data, keys, plan, timings, t0)


def _build(cfg: Config, todo: list[str]) -> dict:
    from emotion_fusion.branches.image import ImageBranch
    from emotion_fusion.branches.text import TextBranch
    kinds = {"image": ImageBranch, "text": TextBranch}
    return {b: kinds[b].from_config(cfg) for b in todo}


def _image_items(branch, frames: dict) -> dict:
    """Per split: the image branch's raw probabilities and pooled features, its epoch candidates."""
    items = {}
    for part in ("val", "test"):
        p, emb = branch.predict(frames[part])
        items[part] = {"p": p, "emb": emb, "y": frames[part].y.to_numpy()}
    for part, cands in _epoch_probs(branch, frames, {s: items[s]["p"] for s in items}).items():
        items[part].update({f"p_{k}": v for k, v in cands.items()})   # both weights of the one fit
    return items


def _text_items(branch, frames: dict) -> dict:
    """Per split: the chosen head's raw probabilities, the sentence embeddings, the comparison heads."""
    items = {}
    for part in ("val", "test"):
        p = branch.predict_proba(frames[part])
        others = branch.comparison_proba(frames[part])    # the calibrated zero-shot and the original's raw head
        items[part] = {"p": p, "emb": branch.embed(frames[part]), "y": frames[part].y.to_numpy(),
                       **{f"p_{k}": v for k, v in others.items()}}
    return items


def _record(cfg: Config, name: str, branch, seconds: float) -> dict:
    """What a branch's part keeps beside its arrays: settings (to say later what changed), its label,
    history or head scores, when and how long."""
    rec = {"settings": branch_settings(cfg, name), "version": __version__,
           "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "label": branch.label, "seconds": round(seconds, 1)}
    if name == "image":
        rec["history"] = branch.history
    else:
        rec["text_heads"] = branch.scores
    return rec


def _assemble(cfg: Config, out: Path, split: dict, data: dict, keys: dict, plan: dict, timings: dict,
              t0: float) -> None:
    """Join the two cached parts: temperatures on validation, outputs/{val,test}.npz, examples, run_info."""
    from emotion_fusion.scoring.fusion import apply_temperature, fit_temperature
    img, txt, pairs = split["images"], split["texts"], split["pairs"]
    recs = {b: _parts.read_branch_record(out, b) for b in _runs.BRANCHES}
    if any(r is None for r in recs.values()):
        raise InputError(f"{out / _runs.BRANCH_DIR}: a branch's cached part changed while this run used it; "
                         f"{_runs.rerun(out)}")
    parts = {b: {s: _parts.load_branch_items(out, b, s) for s in _runs.SPLITS} for b in _runs.BRANCHES}
    for b, frames in (("image", img), ("text", txt)):
        for s in _runs.SPLITS:
            if not np.array_equal(parts[b][s]["y"], frames[s].y.to_numpy()):
                raise InputError(f"{out / _runs.BRANCH_DIR}: the cached {b} {s} items are not this split's; "
                                 f"{_runs.rerun(out)} with --out to a new folder")
    im, tx = parts["image"], parts["text"]
    # temperatures on validation, per item: every val face and every val text counts once
    temps = {b: fit_temperature(p["val"][key], p["val"]["y"]) if cfg.calibrate else 1.0
             for b, p, key in (("visual", im, "p"), ("text", tx, "p"), ("text_zeroshot", tx, "p_zeroshot"))}
    for part in ("val", "test"):
        _runs.write_outputs(out, part, p_image=apply_temperature(im[part]["p"], temps["visual"]),
                            y_image=im[part]["y"], y_text=tx[part]["y"],
                            p_text_items=apply_temperature(tx[part]["p"], temps["text"]), pairs=pairs[part],
                            other_text_heads={"zeroshot": apply_temperature(tx[part]["p_zeroshot"],
                                                                            temps["text_zeroshot"]),
                                              "seed_raw": tx[part]["p_seed_raw"]},   # raw: as the original
                            other_image_weights={k[2:]: im[part][k] for k in ("p_best", "p_last")})
    _holdout.save_examples(out, img, txt, pairs["test"])
    _holdout.save_seen(out, img, txt)
    history = recs["image"]["history"]
    label = f"image: {recs['image']['label']}; text: {recs['text']['label']}"
    weights = cfg.weights_status(len(history.get("train_loss", [])))
    title = run_title(cfg, label, split["test_desc"], weights["random_init"])
    timings["total_s"] = time.perf_counter() - t0
    _runs.write_json(out / _runs.INFO, {
        "key": keys["run"], "title": title, "branches": label, "weights": weights, "temperatures": temps,
        "history": history, "text_heads": recs["text"]["text_heads"], "timings": timings,
        "cache": _cache_info(plan),
        "sizes": {k: {p: int(len(v[p])) for p in v} for k, v in (("images", img), ("texts", txt))},
        "dropped": split.get("dropped", {"images": split.get("duplicates_dropped", 0), "texts": 0}),
        "text_test_split": split["text_test_split"], "summary": _data.summarize(data["fer"], data["go"]),
        "pairing_summary": split.get("pairing_summary"),
        "data": {"fer2013": _describe(data["fer_path"]), "goemotions": _describe(data["go_path"])}})


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

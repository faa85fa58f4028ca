"""`run`: the whole experiment, from the two datasets to a complete run directory.

Protocol (DESIGN.md section 5, `holdout`): each branch trains on its own modality's train split minus
a seeded stratified validation slice; train images whose pixels duplicate a validation or test image are
dropped; test pairs are FER2013 `test` images x GoEmotions `test` texts (`dev` when there is no test),
each image with a seeded random text of its label. Everything chosen (early-stopping epoch, text head,
temperatures, the best fusion weight) is chosen on validation; the test pairs are only scored.

Branch outputs are cached in the run directory under a key made from the config (less the fusion
knobs) and the datasets' file signatures: re-running with another fusion weight rebuilds nothing.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from . import data as _data
from . import pairing as _pairing
from . import runs as _runs
from .config import Config, load_config
from .errors import InputError
from .labels import CLASSES

# Settings that only change how cached branch outputs are fused and scored: not part of the cache key.
_SCORING_ONLY = ("fusion_weight", "fusion_rule", "n_boot", "progress")
# Bump when a code change alters branch outputs, so older run directories are recomputed.
CACHE_FORMAT = 2
N_EXAMPLES = 12          # test pairs kept (face + text) for the notebook's example gallery
FACES_PER_CLASS = 6      # train faces kept per class for the notebook's sample grid


@dataclass
class RunResult:
    """What `run` returns: the run directory, its config and results, and what it reused."""

    dir: Path
    config: Config
    results: dict
    reused: bool
    info: dict = field(default_factory=dict)   # history, text-head scores, timings, data summary

    def table(self):
        """The results table (visual / text / fusion / fusion at the best validation weight)."""
        return _runs.results_table(self.results)

    def table_text(self) -> str:
        return _runs.format_results(self.results)


# --- public entry points ----------------------------------------------------------------------------
def run(config: Config | None = None, *, fer2013: str | Path | None = None,
        goemotions: str | Path | None = None, out: str | Path = "runs/latest", **overrides: Any) -> RunResult:
    """Train and evaluate both branches (or reuse their cached outputs) and write `out`.

    `config` defaults to the `offline` profile; keyword `overrides` replace any of its settings.
    """
    cfg = dataclasses.replace(config, **overrides) if config else Config.from_profile("offline", **overrides)
    fer_path, go_path = _data.resolve_paths(fer2013, goemotions)
    out = _check_out_dir(out, [fer_path, go_path])
    _check_weights(cfg)
    weight_files = [_signature(Path(w)) for w in (cfg.image_weights, cfg.text_weights)
                    if w is not None and Path(w).is_file()]
    key = _runs.fingerprint({k: v for k, v in cfg.to_dict().items() if k not in _SCORING_ONLY},
                            _signature(fer_path), _signature(go_path), weight_files, __version__, CACHE_FORMAT)
    info_path = out / "run_info.json"
    reused = _cache_hit(out, key)
    if reused:
        info = _runs.read_json(info_path)
    else:
        for stale in ("run_info.json", "results.json"):   # a crash below must not leave a valid-looking run
            (out / stale).unlink(missing_ok=True)
        info = _compute(cfg, fer_path, go_path, out, key)
        _runs.write_json(info_path, info)
    _runs.write_json(out / "config.json", cfg.to_dict())
    results = _runs.score_run(out)
    results["title"] = info["title"]
    results["reused_cached_outputs"] = reused
    _runs.write_results(out, results)
    return RunResult(out, cfg, results, reused, info)


def _check_weights(cfg: Config) -> None:
    """Fail in seconds, before any data is decoded, when a branch's weights cannot be had."""
    from . import image as _image
    from . import text as _text
    _image.locate_weights(cfg.image_weights)
    _text.locate_weights(cfg.text_model, cfg.text_weights)


def _cache_hit(out: Path, key: str) -> bool:
    """True when `out` holds complete outputs made under `key`; anything else means recompute."""
    info_path = out / "run_info.json"
    try:
        if not info_path.is_file() or _runs.read_json(info_path).get("key") != key:
            return False
        for split in ("val", "test"):       # a hand-edited npz is recomputed, never reused
            _runs.load_outputs(out, split, key=key)
    except InputError:
        return False
    return all((out / f).is_file() for f in ("models/image.pth", "models/text_head.npz", "outputs/examples.npz"))


def evaluate_run(run_dir: str | Path, *, fer2013: str | Path | None = None,
                 goemotions: str | Path | None = None, out: str | Path) -> RunResult:
    """Score RUN_DIR's trained branches on another test set (FER2013 `test`, GoEmotions test/dev).

    No training: the saved ResNet-50, the text encoder named in the config with the saved head, and the
    temperatures fitted on RUN_DIR's validation pairs. Validation outputs are carried over unchanged, so
    the best validation weight is the same as RUN_DIR's.
    """
    src = Path(run_dir)
    cfg = load_config(src / "config.json")
    info = _runs.read_json(src / "run_info.json")
    val = _runs.load_outputs(src, "val", key=info["key"])
    fer_path, go_path = _data.resolve_paths(fer2013, goemotions)
    out = _check_out_dir(out, [fer_path, go_path, src])
    fer = _data.load_fer2013(fer_path, splits=["test"], progress=cfg.progress)
    go = _data.load_goemotions(go_path, mapping=cfg.label_map, multi_label=cfg.multi_label)
    text_split = _test_text_split(go, go_path)
    texts = go[(go.split == text_split) & (go.y >= 0)].reset_index(drop=True)
    test = fer[fer.split == "test"].reset_index(drop=True)
    pairs = _pairing.make_pairs(test.y.to_numpy(), texts.y.to_numpy(), cfg.seed + 2)
    image_model, text_model, head = _load_trained(src, cfg)
    p_img = _predict_images(cfg, image_model, _data.stack_pixels(test))
    p_txt = _predict_texts(cfg, text_model, head, texts.text.iloc[pairs].tolist())
    from .fusion import apply_temperature
    key = _runs.fingerprint(info["key"], _signature(fer_path), _signature(go_path))
    _runs.write_outputs(out, "val", val["p_visual"], val["p_text"], val["y"], key=key)
    _runs.write_outputs(out, "test", apply_temperature(p_img, info["temperatures"]["visual"]),
                        apply_temperature(p_txt, info["temperatures"]["text"]), test.y.to_numpy(), key=key)
    import shutil
    shutil.copytree(src / "models", out / "models", dirs_exist_ok=True)   # so predict/evaluate work here too
    examples = src / "outputs" / "examples.npz"
    if examples.is_file():
        shutil.copy2(examples, out / "outputs" / "examples.npz")
    new_info = {**info, "key": key, "evaluated_from": str(src.resolve()), "text_test_split": text_split,
                "sizes": {"images": {"test": int(len(test))}, "texts": {"test": int(len(texts))}},
                "data": {"fer2013": _describe(fer_path), "goemotions": _describe(go_path)},
                "title": f"{info['branches']} — evaluated on FER2013 test × GoEmotions {text_split} "
                         f"({_describe(fer_path)}, {_describe(go_path)})"}
    new_info.pop("summary", None)
    new_info.pop("duplicates_dropped", None)
    _runs.write_json(out / "run_info.json", new_info)
    _runs.write_json(out / "config.json", cfg.to_dict())
    results = _runs.score_run(out)
    results["title"] = new_info["title"]
    _runs.write_results(out, results)
    return RunResult(out, cfg, results, False, new_info)


def predict(run_dir: str | Path, *, image: str | Path, text: str, weight: float | None = None) -> dict:
    """One face image + one text -> each branch's and the fused probabilities and labels."""
    from PIL import UnidentifiedImageError

    from .fusion import apply_temperature, fuse
    src = Path(run_dir)
    cfg = load_config(src / "config.json")
    info = _runs.read_json(src / "run_info.json")
    if not str(text).strip():
        raise InputError("the text is empty; pass a non-empty --text")
    try:      # decoded exactly as the training faces were (grayscale, 48x48)
        pixels = _data._decode(Path(image).read_bytes())
    except FileNotFoundError:
        raise InputError(f"image {image} not found; pass an existing image file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"image {image} cannot be decoded ({e}); pass a JPEG or PNG face image") from None
    image_model, text_model, head = _load_trained(src, cfg)
    p_v = apply_temperature(_predict_images(cfg, image_model, pixels[None]), info["temperatures"]["visual"])
    p_t = apply_temperature(_predict_texts(cfg, text_model, head, [text]), info["temperatures"]["text"])
    w = cfg.fusion_weight if weight is None else weight
    p_f = fuse(p_v, p_t, w, rule=cfg.fusion_rule)
    out = {"weight": w, "rule": cfg.fusion_rule}
    for name, p in (("visual", p_v), ("text", p_t), ("fusion", p_f)):
        out[name] = {"label": CLASSES[int(p[0].argmax())], "probs": dict(zip(CLASSES, map(float, p[0])))}
    return out


# --- the computation ----------------------------------------------------------------------------------
def _compute(cfg: Config, fer_path: Path, go_path: Path, out: Path, key: str) -> dict:
    from .fusion import apply_temperature, fit_temperature
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    fer = _data.load_fer2013(fer_path, progress=cfg.progress)
    go = _data.load_goemotions(go_path, mapping=cfg.label_map, multi_label=cfg.multi_label)
    timings["load_data_s"] = time.perf_counter() - t0
    summary = _data.summarize(fer, go)
    split = _split(cfg, fer, go, go_path)
    img, txt = split["images"], split["texts"]

    t = time.perf_counter()
    p_img, history, image_label = _image_branch(cfg, img, out)
    timings["image_branch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    p_txt, head_scores, text_label = _text_branch(cfg, txt, split["pairs"], out)
    timings["text_branch_s"] = time.perf_counter() - t

    temps = {}
    arrays = {}
    for part in ("val", "test"):
        pairs = split["pairs"][part]
        arrays[part] = dict(p_visual=p_img[part], p_text=p_txt[part], y=img[part].y.to_numpy())
        assert len(pairs) == len(img[part])  # internal invariant: one text per image
    for branch, name in (("p_visual", "visual"), ("p_text", "text")):
        temps[name] = (fit_temperature(arrays["val"][branch], arrays["val"]["y"]) if cfg.calibrate else 1.0)
    for part in ("val", "test"):
        a = arrays[part]
        _runs.write_outputs(out, part, apply_temperature(a["p_visual"], temps["visual"]),
                            apply_temperature(a["p_text"], temps["text"]), a["y"], key=key,
                            extra={"text_index": split["pairs"][part]})
    _save_examples(out, img, txt, split["pairs"]["test"])
    branches = f"image: {image_label}; text: {text_label}"
    title = f"{cfg.profile} profile — {branches} — test = {split['test_desc']}"
    random_init = ([f"ResNet-50 from random init, trained {len(history['train_loss'])} epochs"]
                   if cfg.image_weights is None else [])
    if cfg.text_model != "minilm" and cfg.text_weights is None:
        random_init.append("CLIP text encoder random and untrained")
    if random_init:     # every table made from random-init weights says so
        title += " — RANDOM-INIT WEIGHTS: " + "; ".join(random_init)
    timings["total_s"] = time.perf_counter() - t0
    return {"key": key, "title": title, "branches": branches, "temperatures": temps,
            "history": history, "text_heads": head_scores, "timings": timings,
            "sizes": {k: {p: int(len(v[p])) for p in v} for k, v in (("images", img), ("texts", txt))},
            "duplicates_dropped": split["duplicates_dropped"], "text_test_split": split["text_test_split"],
            "data": {"fer2013": _describe(fer_path), "goemotions": _describe(go_path)}, "summary": summary}


def _split(cfg: Config, fer, go, go_path: Path) -> dict:
    """Train/val/test frames for both modalities and the val/test pairs (text index per image)."""
    if cfg.protocol == "seed":
        from .seed_protocol import seed_split
        return seed_split(cfg, fer, go)
    if not (fer.split == "train").any() or not (fer.split == "test").any():
        raise InputError("FER2013 source needs both train/ and test/ for `run`; for a test-only source "
                         "use `python -m emotion_fusion evaluate`")
    train = fer[fer.split == "train"].reset_index(drop=True)
    keep, held = _pairing.stratified_split(train.y.to_numpy(), cfg.val_fraction, cfg.seed)
    images = {"train": train.iloc[keep].reset_index(drop=True), "val": train.iloc[held].reset_index(drop=True),
              "test": fer[fer.split == "test"].reset_index(drop=True)}
    dropped = 0
    if cfg.drop_train_duplicates:   # a face seen in training (or validation) must not be scored again
        images["val"], n_val = _data.drop_duplicates_of(images["val"], [images["test"]])
        images["train"], dropped = _data.drop_duplicates_of(images["train"], [images["val"], images["test"]])
        dropped += n_val
    go = go[go.y >= 0]
    gtrain = go[go.split == "train"].reset_index(drop=True)
    if gtrain.empty:
        raise InputError(f"{go_path}: no usable train texts (train.tsv missing or every row dropped)")
    keep, held = _pairing.stratified_split(gtrain.y.to_numpy(), cfg.val_fraction, cfg.seed)
    text_test_split = _test_text_split(go, go_path)
    texts = {"train": gtrain.iloc[keep].reset_index(drop=True), "val": gtrain.iloc[held].reset_index(drop=True),
             "test": go[go.split == text_test_split].reset_index(drop=True)}
    # Per-class caps (None = all). Test texts are not capped: only the paired ones are ever encoded.
    caps = [(images, "train", cfg.train_per_class), (images, "val", cfg.val_per_class),
            (images, "test", cfg.test_per_class), (texts, "train", cfg.text_train_per_class),
            (texts, "val", cfg.val_per_class)]
    for frames, part, cap in caps:
        if cap is not None:
            idx = _pairing.cap_per_class(frames[part].y.to_numpy(), cap, cfg.seed)
            frames[part] = frames[part].iloc[idx].reset_index(drop=True)
    pairs = {part: _pairing.make_pairs(images[part].y.to_numpy(), texts[part].y.to_numpy(), cfg.seed + i + 1)
             for i, part in enumerate(("val", "test"))}
    return {"images": images, "texts": texts, "pairs": pairs, "duplicates_dropped": int(dropped),
            "text_test_split": text_test_split, "test_desc": f"FER2013 test × GoEmotions {text_test_split}"}


def _image_branch(cfg: Config, img: dict, out: Path):
    from . import image as _image
    model, preprocess = _image.load_image_model(weights=cfg.image_weights, image_size=cfg.image_size,
                                                device=cfg.device, seed=cfg.seed)
    history = _image.train_image_model(
        model, preprocess, _data.stack_pixels(img["train"]), img["train"].y.to_numpy(),
        _data.stack_pixels(img["val"]), img["val"].y.to_numpy(), epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, mode=cfg.image_mode,
        patience=cfg.patience, augment=cfg.augment, fast=cfg.fast, seed=cfg.seed, device=cfg.device,
        progress=cfg.progress, lr_schedule=cfg.lr_schedule)
    _image.save_image_model(model, out / "models" / "image.pth", weights_label=model.weights_label)
    probs = {part: _predict_images(cfg, (model, preprocess), _data.stack_pixels(img[part]))
             for part in ("val", "test")}
    label = f"ResNet-50 {model.weights_label} → trained {len(history['train_loss'])} epochs at {cfg.image_size}px"
    return probs, history, label


def _text_branch(cfg: Config, txt: dict, pairs: dict, out: Path):
    from . import text as _text
    model, tokenize = _text.load_text_model(cfg.text_model, weights=cfg.text_weights, device=cfg.device,
                                            seed=cfg.seed)
    enc = lambda texts: _text.encode_texts(model, tokenize, list(texts), fast=cfg.fast,  # noqa: E731
                                           device=cfg.device, progress=cfg.progress)
    emb_train, emb_val = enc(txt["train"].text), enc(txt["val"].text)
    y_train, y_val = txt["train"].y.to_numpy(), txt["val"].y.to_numpy()
    heads = []
    if cfg.text_head in ("auto", "zeroshot"):
        heads.append(_text.zero_shot_head(model, tokenize, emb_val=emb_val, y_val=y_val))
    if cfg.text_head in ("auto", "probe"):
        heads.append(_text.fit_probe(emb_train, y_train, emb_val, y_val, seed=cfg.seed))
    head, scores = _text.choose_text_head(heads, emb_val, y_val)
    head.save(out / "models" / "text_head.npz")
    test_idx = pairs["test"]
    used, inverse = np.unique(test_idx, return_inverse=True)   # encode each paired test text once
    emb_test = enc(txt["test"].text.iloc[used])[inverse]
    probs = {"val": head.predict_proba(emb_val)[pairs["val"]], "test": head.predict_proba(emb_test)}
    return probs, scores, f"{model.label} + {head.kind} head (chosen on validation)"


# --- helpers ---------------------------------------------------------------------------------------------
def _load_trained(src: Path, cfg: Config):
    from . import image as _image
    from . import text as _text
    from .text import TextHead
    for f in ("models/image.pth", "models/text_head.npz"):
        if not (src / f).is_file():
            raise InputError(f"{src / f} is missing; re-run `python -m emotion_fusion run` for this run dir")
    image_model = _image.load_image_model(weights=str(src / "models" / "image.pth"), device=cfg.device)
    text_model = _text.load_text_model(cfg.text_model, weights=cfg.text_weights, device=cfg.device,
                                       seed=cfg.seed)
    return image_model, text_model, TextHead.load(src / "models" / "text_head.npz")


def _predict_images(cfg: Config, image_model, pixels: np.ndarray) -> np.ndarray:
    from . import image as _image
    model, preprocess = image_model
    return _image.predict_proba(model, preprocess, pixels, fast=cfg.fast, device=cfg.device,
                                progress=cfg.progress and len(pixels) > 1, tta=cfg.tta)


def _predict_texts(cfg: Config, text_model, head, texts: list[str]) -> np.ndarray:
    from . import text as _text
    model, tokenize = text_model
    emb = _text.encode_texts(model, tokenize, texts, fast=cfg.fast, device=cfg.device,
                             progress=cfg.progress and len(texts) > 1)
    return head.predict_proba(emb)


def _save_examples(out: Path, img: dict, txt: dict, test_pairs: np.ndarray) -> None:
    """A few faces and pairs for the notebook, so a cached re-run needs no dataset decoding."""
    rng = np.random.default_rng(0)
    train = img["train"]
    face_idx = np.concatenate([rng.permutation(np.flatnonzero(train.y.to_numpy() == c))[:FACES_PER_CLASS]
                               for c in range(len(CLASSES))])
    pair_idx = np.sort(rng.permutation(len(img["test"]))[:N_EXAMPLES])
    np.savez(out / "outputs" / "examples.npz",
             face_pixels=_data.stack_pixels(train.iloc[face_idx]), face_y=train.y.to_numpy()[face_idx],
             pair_index=pair_idx, pair_pixels=_data.stack_pixels(img["test"].iloc[pair_idx]),
             pair_texts=np.array(txt["test"].text.iloc[test_pairs[pair_idx]].tolist()),
             pair_y=img["test"].y.to_numpy()[pair_idx])


def _test_text_split(go, go_path: Path) -> str:
    for s in ("test", "dev"):
        if ((go.split == s) & (go.y >= 0)).any():
            return s
    raise InputError(f"{go_path}: no test.tsv or dev.tsv with usable texts; test pairs need one of them")


def _signature(path: Path) -> list:
    """Cheap identity of a dataset on disk: (name, size, mtime) of every file under it."""
    path = Path(path)
    if not path.exists():
        return [str(path)]      # e.g. a HF dataset id
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(p, p.stat()) for p in files]
    return [[str(p.relative_to(path.parent)), st.st_size, st.st_mtime_ns] for p, st in stats]


def _describe(path: Path) -> str:
    return Path(path).name if Path(path).exists() else str(path)


def _check_out_dir(out: str | Path, inputs: list[Path]) -> Path:
    """The run directory must not lie inside any input path (inputs are never written)."""
    out = Path(out).resolve()
    for p in inputs:
        p = Path(p)
        if p.exists() and (out == p.resolve() or p.resolve() in out.parents):
            raise InputError(f"output directory {out} is inside the input {p}; choose a folder outside it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_examples(run_dir: str | Path) -> dict:
    """The sample faces and example test pairs saved by `run` (for the notebook's gallery)."""
    f = Path(run_dir) / "outputs" / "examples.npz"
    if not f.is_file():
        raise InputError(f"{f} is missing; re-run `python -m emotion_fusion run` for this run dir")
    with np.load(f) as z:
        return {k: z[k] for k in z.files}

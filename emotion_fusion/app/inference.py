"""Using a finished run: `load_predictor` / `predict` (a face and a text), `evaluate_run` (another test set).

Every entry point first checks the run dir against its manifest: an incomplete dir is refused in one
line that says to re-run. The models are the trained branches in RUN_DIR/models, calibrated with the
temperatures fitted on RUN_DIR's validation data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion_fusion import data as _data
from emotion_fusion import runs as _runs
from emotion_fusion.config import load_config
from emotion_fusion.data import holdout as _holdout
from emotion_fusion.data.files import write_bytes
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError

from .inputs import MAX_TEXT_CHARS, check_text, read_face  # noqa: F401 - names of this module's API


class Predictor:
    """The two trained branches of a run dir, calibrated, ready to score faces and texts."""

    def __init__(self, run_dir):
        from emotion_fusion.branches.image import ImageBranch
        from emotion_fusion.branches.text import TextBranch
        self.dir = _runs.run_dir_path(run_dir)
        _runs.verify(self.dir)
        self.config = load_config(self.dir / _runs.CONFIG)
        self.info = _runs.read_json(self.dir / _runs.INFO)
        self.temperatures = self.info.get("temperatures", {})
        self.title = self.info.get("title", "")
        self.image = ImageBranch.load(self.dir / "models", self.config)
        self.text = TextBranch.load(self.dir / "models", self.config)

    def image_probs(self, faces) -> np.ndarray:
        """Calibrated (N, 7) probabilities of 48x48 uint8 faces (or a frame from `load_fer2013`)."""
        from emotion_fusion.scoring.fusion import apply_temperature
        return apply_temperature(self.image.predict_proba(faces), self.temperatures.get("visual", 1.0))

    def text_probs(self, texts) -> np.ndarray:
        """Calibrated (N, 7) probabilities of texts."""
        from emotion_fusion.scoring.fusion import apply_temperature
        texts = [texts] if isinstance(texts, str) else list(texts)
        for t in texts:
            check_text(t)
        return apply_temperature(self.text.predict_proba(texts), self.temperatures.get("text", 1.0))

    def fuse(self, p_visual, p_text, weight: float | None = None) -> np.ndarray:
        """The run's fusion rule at `weight` (default: the run's fusion weight)."""
        from emotion_fusion.scoring.fusion import fuse
        w = self.config.fusion_weight if weight is None else weight
        return fuse(p_visual, p_text, w, rule=self.config.fusion_rule)


def load_predictor(run_dir) -> Predictor:
    """Load RUN_DIR's trained branches once (for many predictions, the demo, batch scoring)."""
    return Predictor(run_dir)


def predict(run_dir, *, image, text: str, weight: float | None = None) -> dict:
    """One face (file path or 48x48 uint8 array) + one text -> each branch's and the fused probabilities."""
    from emotion_fusion.scoring.fusion import check_weight
    check_text(text)
    pixels = np.asarray(image, dtype=np.uint8) if isinstance(image, np.ndarray) else read_face(image)
    w = None if weight is None else check_weight(weight)
    pred = load_predictor(run_dir)
    p_v, p_t = pred.image_probs(pixels[None] if pixels.ndim == 2 else pixels), pred.text_probs([text])
    p_f = pred.fuse(p_v, p_t, w)
    out = {"weight": pred.config.fusion_weight if w is None else w, "rule": pred.config.fusion_rule}
    for name, p in (("visual", p_v), ("text", p_t), ("fusion", p_f)):
        out[name] = {"label": CLASSES[int(p[0].argmax())], "probs": dict(zip(CLASSES, map(float, p[0])))}
    return out


def evaluate_run(run_dir, *, fer2013=None, goemotions=None, out, skip_bad: bool = False,
                 allow_empty_classes: bool = False):
    """Score RUN_DIR's trained branches on another test set (FER2013 `test`, GoEmotions test/dev).

    No training. Test faces whose pixels, and test texts whose normalised text, the run trained or
    validated on are dropped (and counted); validation outputs are carried over unchanged, so the best
    validation weight is RUN_DIR's.
    """
    from emotion_fusion.data.pairing import make_pairs
    from emotion_fusion.pipeline import RunResult
    from emotion_fusion.report import score_run, write_results
    src = _runs.run_dir_path(run_dir)
    _runs.verify(src)
    cfg = load_config(src / _runs.CONFIG)
    fer_path, go_path = _data.resolve_paths(fer2013, goemotions)
    with _runs.writing(out, [fer_path, go_path, src]) as out:    # refused at once while another writer holds it
        faces, texts, text_split, dropped, skipped = _test_data(src, cfg, fer_path, go_path, skip_bad,
                                                                allow_empty_classes)
        pairs = make_pairs(faces.y.to_numpy(), texts.y.to_numpy(), cfg.seed + 2)
        pred = load_predictor(src)     # only now: a bad dataset fails in seconds, before any model loads
        info = pred.info
        _runs.invalidate(out)
        val = _runs.load_outputs(src, "val")
        extra = {kw: {k[len(prefix):]: val[k] for k in val if k.startswith(prefix)}   # both epochs, other heads
                 for kw, prefix in (("other_image_weights", "p_image_"), ("other_text_heads", "p_text_items_"))}
        _runs.write_outputs(out, "val", **{k: val[k] for k in _runs.ITEM_ARRAYS}, **extra)
        _runs.write_outputs(out, "test", p_image=pred.image_probs(faces), y_image=faces.y.to_numpy(),
                            p_text_items=pred.text_probs(texts.text), y_text=texts.y.to_numpy(), pairs=pairs)
        # predict/evaluate work on the new dir too; copied by atomic writes (never through a symlink)
        for f in [p.relative_to(src) for p in (src / "models").iterdir() if p.is_file()] + \
                [Path(_holdout.EXAMPLES), Path(_holdout.SEEN)]:
            write_bytes(out / f, (src / f).read_bytes())
        title = (f"{info['branches']} — evaluated on FER2013 test × GoEmotions {text_split} ({fer_path.name}, "
                 f"{Path(go_path).name}); dropped as seen in training: {dropped['images']} faces, "
                 f"{dropped['texts']} texts")
        weights = cfg.run_weights(info)     # recomputed for an older run: its title's flag may be stale
        if weights["random_init"] if weights else "RANDOM-INIT" in info.get("title", ""):
            title += " — RANDOM-INIT WEIGHTS"
        key = _runs.fingerprint(info["key"], _runs.file_signature(fer_path), _runs.file_signature(go_path))
        _runs.write_json(out / _runs.INFO, {
            **{k: v for k, v in info.items() if k not in ("summary", "dropped")}, "key": key, "title": title,
            **({"weights": weights} if weights else {}),
            "evaluated_from": str(src.resolve()), "text_test_split": text_split, "dropped_seen": dropped,
            "sizes": {"images": {"test": int(len(faces))}, "texts": {"test": int(len(texts))}},
            "skipped": skipped})
        _runs.write_json(out / _runs.CONFIG, cfg.to_dict())
        _runs.write_manifest(out, key)
        results = score_run(out, draws=cfg.pairing_draws)
        write_results(out, results)
    return RunResult.from_dir(out, cfg, results, False)


def _test_data(src, cfg, fer_path, go_path, skip_bad: bool, allow_empty_classes: bool):
    """The test faces and texts of the given sources, minus what RUN_DIR saw; the skipped bad items."""
    fer = _data.load_fer2013(fer_path, splits=["test"], progress=cfg.progress, skip_bad=skip_bad,
                             allow_empty_classes=allow_empty_classes)
    go = _data.load_goemotions(go_path, mapping=cfg.label_map, multi_label=cfg.multi_label, skip_bad=skip_bad)
    skipped = [f"{s['source']}: {s['reason']}" for df in (fer, go) for s in df.attrs.get("skipped", [])]
    text_split = _holdout.test_text_split(go, go_path)
    seen_faces, seen_texts = _holdout.load_seen(src)
    faces = fer[(fer.split == "test") & ~fer.hash.isin(seen_faces)].reset_index(drop=True)
    texts = go[(go.split == text_split) & (go.y >= 0)].reset_index(drop=True)
    texts = texts[~texts.text.map(_holdout.normalise_text).isin(seen_texts)].reset_index(drop=True)
    dropped = {"images": int((fer.split == "test").sum() - len(faces)),
               "texts": int(((go.split == text_split) & (go.y >= 0)).sum() - len(texts))}
    if faces.empty or texts.empty:
        raise InputError(f"nothing left to score: every test face or text of {fer_path} / {go_path} was seen "
                         "in the run's training or validation data")
    return faces, texts, text_split, dropped, skipped

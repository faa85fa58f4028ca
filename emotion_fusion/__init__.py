"""emotion_fusion: ResNet-50 faces + CLIP/MiniLM texts, combined by weighted late fusion.

The public API is a handful of functions (in the style of `clip.load`), everything the notebook uses:

    cfg = ef.Config.from_profile("offline", fusion_weight=0.6)
    result = ef.run(cfg, out="runs/offline")          # train (or reuse the cache), score, write the run dir
    result.table()                                     # the titled results table
    ef.score_run("runs/offline", weight=0.3)           # re-score from the cache: no model, no torch
    ef.predict("runs/offline", image="face.jpg", text="I can't believe it!")

Names are imported lazily so that `import emotion_fusion` (and the `fuse` CLI) never pays for torch.
"""
from ._lazy import lazy_exports
from .data.labels import CLASSES
from .errors import InputError

__version__ = "0.2.0"

_WHERE = {
    # data and pairing
    "load_fer2013": "data", "load_goemotions": "data", "format_summary": "data", "make_pairs": "data",
    # branches and encoders
    "load_image_model": "branches.image", "ImageBranch": "branches.image", "load_text_model": "branches.text",
    "TextBranch": "branches.text", "available_models": "branches.text", "register_encoder": "branches.encoders",
    "EncoderSpec": "branches.encoders",
    # running and using a run
    "Config": "config", "run": "pipeline", "RunResult": "pipeline", "load_examples": "pipeline",
    "evaluate_run": "app.inference", "predict": "app.inference", "load_predictor": "app.inference",
    "load_outputs": "runs", "load_embeddings": "parts",
    # fusion, scoring and tables
    "fuse": "scoring.fusion", "sweep": "scoring.fusion", "evaluate": "scoring.metrics",
    "per_class_table": "scoring.metrics", "confusion": "scoring.metrics", "mcnemar": "scoring.metrics",
    "score_run": "report", "results_table": "report", "format_results": "report", "as_table": "report",
    "comparison_table": "report", "text_reuse_table": "report", "dependence_curve": "report",
    "compare_fusion": "comparison", "register_fusion": "scoring.registry", "available_fusion_methods": "scoring.catalog",
    "original_bug": "original.bugs", "original_epoch_bug": "original.bugs", "pool_comparison": "original.reference",
    "config_table": "settings_table", "per_class_report": "report", "mcnemar_table": "report", "sizes_table": "report",
    "text_heads_table": "report", "Table": "tables",
    # the results section in words (the report's opening, the setup, per class side by side)
    "answer": "writeup", "answer_markdown": "writeup", "headline_table": "writeup", "setup_table": "writeup",
    "per_class_table_side_by_side": "writeup",
    # plots
    "plot_history": "scoring.plots", "plot_sweep": "scoring.plots", "plot_confusions": "scoring.plots",
    "plot_face_grid": "scoring.plots", "plot_example_pairs": "scoring.plots", "plot_headline": "scoring.headline",
    # the interactive page
    "demo": "app.demo",
}

__all__ = ["CLASSES", "InputError", *_WHERE]
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

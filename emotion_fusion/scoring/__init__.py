"""Everything computed from the branches' cached probabilities, without a model or torch: fusion rules,
temperature scaling and the weight sweep (`fusion`), metrics (`metrics`), the statistics of the
pairing design (`stats`), the fusion-method registry (`registry`, `methods`, `learned`) and its comparison
(`compare`), and figures (`plots`, `methodplots`, which alone import matplotlib; names load on use)."""
from emotion_fusion._lazy import lazy_exports

_WHERE = {
    "fuse": "fusion", "sweep": "fusion", "check_weight": "fusion", "apply_temperature": "fusion",
    "fit_temperature": "fusion",
    "evaluate": "metrics", "evaluate_many": "metrics", "confusion": "metrics", "per_class_table": "metrics",
    "mcnemar": "metrics", "macro_f1": "metrics",
    "score_draws": "stats", "draw_pairings": "stats", "text_reuse": "stats",
    "plot_confusions": "plots", "plot_sweep": "plots", "plot_history": "plots", "plot_face_grid": "plots",
    "plot_example_pairs": "plots",
    "register_fusion": "registry", "available_methods": "catalog", "get_methods": "catalog", "Fitted": "registry",
    "Items": "registry", "compare": "compare", "plot_methods": "methodplots",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

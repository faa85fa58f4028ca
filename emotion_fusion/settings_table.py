"""`config_table`: a run's configuration as a short table (what matters for reading the results, then every
setting that differs from the profile's defaults)."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from emotion_fusion.config import Config
from emotion_fusion.tables import Table, cell, table

_NONE_WORDS = {"image_weights": "none (random init)", "text_weights": "none (random init)", "device": "auto",
               "seed_random_state": "none (the run's seed)"}   # None in words (the *_per_class caps: "all")


def _setting_words(name: str, value: Any) -> str:
    """A setting's value as typed, in short: floats in %g (1e-4 stays "0.0001", not "0.000"), None in words."""
    if value is None:
        return _NONE_WORDS.get(name, "all")
    if isinstance(value, float):
        return f"{value:g}"
    return cell(value)


def config_table(cfg: Config, run_dir=None) -> Table:
    """What matters for reading the results (profile, models, image size, epochs, fusion, pairing draws,
    seed), then every setting that differs from the profile's defaults; config.json holds them all."""
    image = "random init" if cfg.image_weights is None else cfg.image_weights
    text = cfg.text_weights or ("random init" if cfg.text_encoder_random else "its bundled weights")
    how = "all layers trained" if cfg.image_mode == "finetune" else "backbone frozen, head trained"
    rows = {"profile": cfg.profile, "protocol": cfg.protocol,
            "image branch": f"ResNet-50 ({image}), {how}", "image size": f"{cfg.image_size} px",
            "epochs (at most)": cfg.epochs,
            "text branch": f"{cfg.text_model} ({text}), head {cfg.text_head}",
            "fusion": f"w = {cfg.fusion_weight:.2f} visual, {cfg.fusion_rule} rule"
                      + (", calibrated" if cfg.calibrate else ", uncalibrated"),
            "pairing draws": cfg.pairing_draws, "bootstrap resamples": cfg.n_boot, "seed": cfg.seed}
    if cfg.weights_declared_random:
        rows["weights"] = "declared random (a dry run)"
    default = Config.from_profile(cfg.profile)
    changed = [f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)]
    recs = [{"setting": k, "value": cell(v)} for k, v in rows.items()]
    recs += [{"setting": f"changed: {k}",
              "value": f"{_setting_words(k, getattr(cfg, k))} (profile: {_setting_words(k, getattr(default, k))})"}
             for k in changed]
    where = f"{run_dir}/config.json" if run_dir else "config.json in the run directory"
    return table(recs, "Configuration (what matters for reading the results, and changes to the profile)",
                 note=f"Every setting is in {where}.", index="setting")

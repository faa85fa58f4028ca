"""Regenerate HAICAI_2026.ipynb (outputs cleared). The notebook holds parameters, calls and prose only."""
from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

cells = [
    md("# HAICAI 2026 — multimodal emotion recognition with late fusion\n\n"
       "A ResNet-50 reads faces (FER2013), a text encoder (CLIP ViT-B/32, or MiniLM offline) reads short "
       "texts (GoEmotions mapped to the same 7 emotions); each test face is paired with a random text of "
       "the same emotion, and a weighted late fusion combines the two branches' calibrated probabilities.\n\n"
       "Run top to bottom. To try another fusion weight, change `FUSION_WEIGHT` and run again: the branch "
       "outputs cached in `RUN_DIR` are reused, so it takes seconds. From a shell: "
       "`papermill HAICAI_2026.ipynb out.ipynb -p FUSION_WEIGHT 0.3`, or "
       "`python -m emotion_fusion fuse --run-dir RUN_DIR --weight 0.3`."),
    code('PROFILE = "offline"      # full | offline | smoke (see README)\n'
         "FUSION_WEIGHT = 0.6      # visual share of the fusion; text gets 1 - FUSION_WEIGHT\n"
         "FER2013 = None           # FER2013 zip or folder; None: $EMOTION_FUSION_DATA, else data/\n"
         "GOEMOTIONS = None        # GoEmotions TSV folder or HF id; None: as above\n"
         'RUN_DIR = "runs/offline"  # branch outputs are cached here\n'
         "SEED = 0\n"
         '# OVERRIDES: any other setting as "key=value" strings, e.g. ["epochs=3", "image_size=48"]\n'
         "OVERRIDES = []",
         metadata={"tags": ["parameters"]}),
    md("## 1. Configuration\nEvery knob lives in one validated `Config`; a profile is a named preset."),
    code("import pandas as pd\n"
         "import emotion_fusion as ef\n"
         "from emotion_fusion import data, metrics, pipeline, plots, runs\n\n"
         "cfg = ef.Config.from_profile(PROFILE, fusion_weight=FUSION_WEIGHT, seed=SEED).with_overrides(OVERRIDES)\n"
         "pd.Series(cfg.to_dict(), name=PROFILE).to_frame()"),
    md("## 2. Run the experiment (or reuse its cached branch outputs)\n"
       "Loads both datasets, trains the image and text branches, pairs faces with texts, calibrates each "
       "branch on validation and scores the test pairs. When `RUN_DIR` already holds outputs made from the "
       "same data and settings, nothing is rebuilt and only the fusion is re-scored."),
    code("result = ef.run(cfg, fer2013=FER2013, goemotions=GOEMOTIONS, out=RUN_DIR)\n"
         'print(result.results["title"])\n'
         'print("reused cached branch outputs:", result.reused)\n'
         'pd.Series(result.info["timings"], name="seconds").round(1).to_frame()'),
    md("## 3. The data\nCounts per split and class, raw and after the GoEmotions → 7-emotion map, and "
       "duplicate images (by decoded pixels) within and across splits."),
    code('print(data.format_summary(result.info["summary"]))'),
    code('examples = pipeline.load_examples(RUN_DIR)\n'
         'plots.plot_face_grid(examples["face_pixels"], examples["face_y"], per_class=6);'),
    md("## 4. Splits and pairing\nEach branch trains on its own modality's train split less a stratified "
       "validation slice; train images duplicating a validation or test image are dropped. Every validation "
       "and test face is paired with a seeded random text of its emotion."),
    code('print("train images dropped as duplicates of val/test:", result.info["duplicates_dropped"])\n'
         'pd.DataFrame(result.info["sizes"])'),
    md("## 5. Image branch (ResNet-50)\nTraining curves; the best validation-loss epoch is restored."),
    code('plots.plot_history(result.info["history"]);'),
    md("## 6. Text branch\nThe head (calibrated zero-shot prompt ensemble or linear probe) is chosen on "
       "validation; its scores there:"),
    code('pd.DataFrame(result.info["text_heads"]["scores"]).set_index("kind")'),
    md("## 7. Results on the test pairs\nVisual only, text only, fusion at `FUSION_WEIGHT`, and fusion at the "
       "weight that is best on validation; 95% bootstrap confidence intervals."),
    code("result.table()", metadata={"tags": ["results-table"]}),
    md("### Fusion weight sweep\nMacro-F1 and accuracy against the visual weight, on validation (which "
       "chooses) and test (which is only scored)."),
    code('plots.plot_sweep(result.results["sweep"], chosen=FUSION_WEIGHT);'),
    md("### Per-class report and confusion matrices (test pairs)"),
    code('test = runs.load_outputs(RUN_DIR, "test")\n'
         'fused = ef.fuse(test["p_visual"], test["p_text"], FUSION_WEIGHT, rule=cfg.fusion_rule)\n'
         'metrics.per_class_table(test["y"], fused.argmax(1))'),
    code('plots.plot_confusions(test["y"], {"visual": test["p_visual"].argmax(1), '
         '"text": test["p_text"].argmax(1), "fusion": fused.argmax(1)});'),
    md("### Does fusion change the decisions? McNemar's test, fusion vs visual only"),
    code('pd.Series(result.results["mcnemar"]).to_frame("fusion vs visual")'),
    md("## 8. Example pairs\nA face, its paired text, and each branch's and the fused prediction."),
    code('i = examples["pair_index"]\n'
         'plots.plot_example_pairs(examples["pair_pixels"], examples["pair_texts"], examples["pair_y"],\n'
         '                         test["p_visual"][i], test["p_text"][i], fused[i], n=6);'),
]

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
Path(__file__).resolve().parents[1].joinpath("HAICAI_2026.ipynb").write_text(nbf.writes(nb))

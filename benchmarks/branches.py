"""Benchmark the two branches' fast paths against plain fp32, side by side in one process.

    python benchmarks/branches.py [--quick] [--json] [--goemotions DIR] [--fer2013 ZIP_OR_DIR]

(a) CLIP ViT-B/32 text encoding (random init) on real GoEmotions dev texts: naive fp32 padded to 77
    tokens vs encode_texts(fast=True) (length-sorted, truncated, bf16 where the CPU has it).
(b) ResNet-50 inference at 224 px (random init) on real FER2013 test faces: fp32 NCHW vs
    predict_proba(fast=True) (channels_last, bf16 where the CPU has it), with argmax agreement.
(a') `--text-only`: where the text speed-up comes from (issue 13): bf16 vs fp32 (EMOTION_FUSION_BF16=0),
    batch size, torch.compile, each against the same naive fp32 reference, with its minimum cosine.
(c) ResNet-50 training throughput at 64 px (the offline profile) with train_image_model, fast vs not.
The machine is shared and noisy: compare the ratios, not the absolute numbers. Writes
benchmarks/results/branches.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emotion_fusion.branches.image import load_image_model, predict_proba  # noqa: E402
from emotion_fusion.branches.precision import BF16_ENV, cpu_native_bf16, precision_label  # noqa: E402
from emotion_fusion.branches.text import encode_texts, load_text_model  # noqa: E402
from emotion_fusion.branches.train import train_image_model  # noqa: E402
from emotion_fusion.data import load_fer2013, stack_pixels  # noqa: E402

# --- defaults: (quick, full) sizes ----------------------------------------------------------------
N_TEXTS = (256, 2048)
N_INFER = (64, 512)
N_TRAIN = (128, 1024)
TEXT_BATCH, INFER_BATCH, TRAIN_BATCH = 64, 32, 64
SEED = 0


def _data_root() -> Path:
    env = os.environ.get("EMOTION_FUSION_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _fer_images(path: Path, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n seeded random faces of a split, decoded by the package's own loader (as a run decodes them)."""
    df = load_fer2013(path, splits=[split], progress=False)
    pick = np.sort(np.random.default_rng(SEED).choice(len(df), size=min(n, len(df)), replace=False))
    return stack_pixels(df.iloc[pick]), df.y.to_numpy()[pick]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_text(go_dir: Path, n: int) -> dict:
    texts = pd.read_csv(go_dir / "dev.tsv", sep="\t", header=None, quoting=3)[0].astype(str).tolist()
    texts = [texts[i] for i in np.random.default_rng(SEED).permutation(len(texts))[:n]]
    model, tokenize = load_text_model("ViT-B/32", weights=None, device="cpu")

    def naive():
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), TEXT_BATCH):
                out.append(model.net.encode_text(tokenize(texts[i:i + TEXT_BATCH]), normalize=True))
        return torch.cat(out).numpy()

    encode_texts(model, tokenize, texts[:8], progress=False)          # warm-up, both paths
    naive_emb, t_naive = _timed(naive)
    fast_emb, t_fast = _timed(lambda: encode_texts(model, tokenize, texts, batch_size=TEXT_BATCH,
                                                   fast=True, progress=False))
    cos = (naive_emb * fast_emb).sum(axis=1)
    return {"n_texts": len(texts), "naive_texts_per_s": len(texts) / t_naive,
            "fast_texts_per_s": len(texts) / t_fast, "text_speedup": t_naive / t_fast,
            "text_cosine_min": float(cos.min()), "text_precision": precision_label("cpu", True)}


def bench_text_variants(go_dir: Path, n: int, rounds: int = 3) -> dict:
    """Text encoding variants vs naive fp32 padded to 77 (CLIP's own encode_text), one process.

    The machine is shared and its load drifts by 2-3x within minutes, so each variant is timed in
    `rounds` paired rounds (naive, then the variant, on the same texts) and the median of the paired
    ratios is reported. encode_texts already sorts the texts it is given by token length and cuts each
    batch at its longest (bucketing over whatever it is passed: give it the whole corpus in one call)."""
    texts = pd.read_csv(go_dir / "dev.tsv", sep="\t", header=None, quoting=3)[0].astype(str).tolist()
    texts = [texts[i] for i in np.random.default_rng(SEED).permutation(len(texts))[:n]]
    model, tokenize = load_text_model("ViT-B/32", weights=None, device="cpu")

    def naive():
        with torch.inference_mode():
            return _timed(lambda: torch.cat([model.net.encode_text(tokenize(texts[i:i + TEXT_BATCH]), normalize=True)
                                             for i in range(0, len(texts), TEXT_BATCH)]).numpy())

    ref, _ = naive()
    out = {"n_texts": n, "rounds": rounds, "variants": {}}
    old_env, plain = os.environ.get(BF16_ENV), model.net.transformer

    def run(name: str, bf16: str, batch: int, compiled: bool = False) -> None:
        os.environ[BF16_ENV] = bf16
        model.net.transformer = torch.compile(plain, dynamic=True) if compiled else plain
        _, t_warm = _timed(lambda: encode_texts(model, tokenize, texts[:2 * batch], batch_size=batch,
                                                progress=False))       # compiles, if it does
        ratios, times = [], []
        for _ in range(rounds):
            t_ref = naive()[1]
            emb, t = _timed(lambda: encode_texts(model, tokenize, texts, batch_size=batch, progress=False))
            ratios.append(t_ref / t)
            times.append(t)
        out["variants"][name] = {"speedup_vs_naive": float(np.median(ratios)), "speedups": ratios,
                                 "texts_per_s": n / float(np.median(times)), "warmup_s": t_warm,
                                 "cosine_min": float((emb * ref).sum(1).min()),
                                 "precision": precision_label("cpu", True)}

    try:
        for name, bf16, batch in (("fp32 batch 64", "0", 64), ("bf16 batch 16", "1", 16),
                                  ("bf16 batch 64", "1", 64), ("bf16 batch 256", "1", 256)):
            run(name, bf16, batch)
        run("bf16 batch 64 torch.compile", "1", 64, compiled=True)
    finally:
        model.net.transformer = plain
        os.environ.pop(BF16_ENV) if old_env is None else os.environ.__setitem__(BF16_ENV, old_env)
    return out


def bench_inference(fer: Path, n: int) -> dict:
    x, _ = _fer_images(fer, "test", n)
    model, pp = load_image_model(None, image_size=224, device="cpu")
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()

    def fp32():
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), INFER_BATCH):
                out.append(torch.softmax(plain(pp(x[i:i + INFER_BATCH])), dim=1))
        return torch.cat(out).numpy()

    predict_proba(model, pp, x[:INFER_BATCH], batch_size=INFER_BATCH, progress=False)   # warm-up
    with torch.inference_mode():
        plain(pp(x[:INFER_BATCH]))
    p_ref, t_ref = _timed(fp32)
    p_fast, t_fast = _timed(lambda: predict_proba(model, pp, x, batch_size=INFER_BATCH, progress=False))
    return {"n_images": len(x), "fp32_img_per_s": len(x) / t_ref, "fast_img_per_s": len(x) / t_fast,
            "inference_speedup": t_ref / t_fast,
            "inference_argmax_agreement": float((p_ref.argmax(1) == p_fast.argmax(1)).mean()),
            "inference_max_abs_prob_diff": float(np.abs(p_ref - p_fast).max()),
            "inference_precision": precision_label("cpu", True)}


def bench_train(fer: Path, n: int) -> dict:
    x, y = _fer_images(fer, "train", n + 32)
    out = {"n_train": n, "train_image_size": 64}
    for fast in (False, True):
        model, pp = load_image_model(None, image_size=64, device="cpu")
        train_image_model(model, pp, x[:TRAIN_BATCH], y[:TRAIN_BATCH], x[-32:], y[-32:], epochs=1,
                          batch_size=TRAIN_BATCH, fast=fast, progress=False)          # warm-up
        hist = train_image_model(model, pp, x[:n], y[:n], x[-32:], y[-32:], epochs=1, batch_size=TRAIN_BATCH,
                                 fast=fast, progress=False)
        out["train_img_per_s" if fast else "train_fp32_img_per_s"] = hist["img_per_s"]
    out["train_speedup"] = out["train_img_per_s"] / out["train_fp32_img_per_s"]
    out["train_precision"] = precision_label("cpu", True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subsets (< 3 min on 2 cores)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--goemotions", type=Path, default=None)
    ap.add_argument("--fer2013", type=Path, default=None)
    ap.add_argument("--text-only", action="store_true", help="only the text-encoding variants (a')")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    args.out = args.out or REPO / "benchmarks" / "results" / ("text_variants.json" if args.text_only else "branches.json")
    root = _data_root()
    go_dir = args.goemotions or root / "goemotions"
    fer = args.fer2013 or (root / "fer2013.zip" if (root / "fer2013.zip").exists() else root / "fer2013")
    for p in (go_dir / "dev.tsv", fer):
        if not p.exists():
            print(f"error: {p} not found; set EMOTION_FUSION_DATA or pass --goemotions/--fer2013", file=sys.stderr)
            return 2
    k = 0 if args.quick else 1
    if args.text_only:
        res = bench_text_variants(go_dir, N_TEXTS[k])
        res.update(threads=torch.get_num_threads(), torch=torch.__version__, cpu_native_bf16=cpu_native_bf16())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"vs naive fp32 padded to 77, {res['n_texts']} texts, median of {res['rounds']} paired rounds:")
        for name, v in res["variants"].items():
            print(f"{name:30s}{v['speedup_vs_naive']:6.2f}x (rounds: {', '.join(f'{r:.2f}' for r in v['speedups'])})"
                  f"  {v['texts_per_s']:7.1f} texts/s  min cosine {v['cosine_min']:.5f}  warm-up {v['warmup_s']:.1f} s")
        return 0
    torch.manual_seed(SEED)
    started = time.perf_counter()
    res = {"quick": args.quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu": platform.processor() or platform.machine(), "cpu_native_bf16": cpu_native_bf16()}
    res.update(bench_text(go_dir, N_TEXTS[k]))
    res.update(bench_inference(fer, N_INFER[k]))
    res.update(bench_train(fer, N_TRAIN[k]))
    res["seconds_total"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")

    table = [("text encode (CLIP B/32, texts/s)", res["naive_texts_per_s"], res["fast_texts_per_s"],
              res["text_speedup"], f"min cosine {res['text_cosine_min']:.5f}"),
             ("ResNet-50 inference 224px (img/s)", res["fp32_img_per_s"], res["fast_img_per_s"],
              res["inference_speedup"], f"argmax agree {res['inference_argmax_agreement']:.3f}"),
             ("ResNet-50 training 64px (img/s)", res["train_fp32_img_per_s"], res["train_img_per_s"],
              res["train_speedup"], "")]
    lines = [f"{'':36s}{'fp32':>9s}{'fast':>9s}{'ratio':>8s}  check",
             *(f"{name:36s}{a:9.1f}{b:9.1f}{r:7.2f}x  {c}" for name, a, b, r, c in table),
             f"fast path on this CPU: {res['text_precision']} (native bf16: {res['cpu_native_bf16']}); "
             f"{res['seconds_total']:.0f} s; written to {args.out}"]
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the demo page's two server-side paths, side by side in one process.

    python benchmarks/demo.py --run-dir runs/offline [--image PHOTO] [--repeats N] [--http] [--json]

(1) one submit after warm-up: face detection + crop, ResNet-50, text encoder + head, fusion  <= 1 s
    (median of N, with the parts timed separately)
(2) one weight-slider change: re-fusion of the session's cached probabilities, no model    <= 50 ms
(3) their ratio, and with --http both again through gradio_client against the app launched on
    127.0.0.1 (round trip: HTTP + queue + JSON, what a user waits for).
Times are handler (server) time unless marked http. The photo defaults to the first FER2013 test face
(sorted, 'happy') that the detector finds when pasted into a 400x300 canvas ($EMOTION_FUSION_DATA).
Results go to benchmarks/results/demo.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from emotion_fusion.app import faces  # noqa: E402
from emotion_fusion.app.demo import Demo, create_app  # noqa: E402
from emotion_fusion.data import resolve_paths  # noqa: E402

LIMITS = {"submit_s": 1.0, "slider_ms": 50.0}
TEXT = "I finally got the job, I can't stop smiling"
RESULTS = REPO / "benchmarks" / "results" / "demo.json"


def _photo(out: Path) -> Path:
    from PIL import Image
    fer, _ = resolve_paths()
    with zipfile.ZipFile(fer) as z:
        for name in sorted(m for m in z.namelist() if m.startswith("test/happy/"))[:60]:
            canvas = Image.new("RGB", (400, 300), (120, 140, 160))
            face = Image.open(io.BytesIO(z.read(name))).convert("L").resize((144, 144), Image.Resampling.BILINEAR)
            canvas.paste(face, (120, 60))
            canvas.save(out)
            if faces.detect_faces(faces.open_image(out)):
                return out
    raise SystemExit("no detectable face among the first 60 FER2013 'happy' test faces")


def _times(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _summary(ts: list[float], scale: float = 1.0) -> dict:
    return {"median": statistics.median(ts) * scale, "min": min(ts) * scale, "max": max(ts) * scale, "n": len(ts)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--image", help="a photo with a face (default: a FER2013 test face on a canvas)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--http", action="store_true", help="also time both through gradio_client")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp())
    image = str(a.image or _photo(tmp / "photo.png"))

    t = time.perf_counter()
    d = Demo(a.run_dir)
    load_s = time.perf_counter() - t
    if d.error:
        raise SystemExit(d.error)
    submit = lambda: d.analyze(image, TEXT, 0.6)  # noqa: E731
    for _ in range(2):                              # warm-up: first-call allocations, oneDNN kernels
        out = submit()
    assert out[-1] is not None, out[0]
    state = out[-1]
    face = faces.extract_face(image)
    weights = iter([i / 20 for i in range(20)] * a.repeats)
    paths = {"submit_s": submit,
             "slider_s": lambda: d.refuse(next(weights), state),
             "detect_crop_s": lambda: faces.extract_face(image),
             "image_branch_s": lambda: d.models.face_probs(face.pixels),
             "text_branch_s": lambda: d.models.text_probs(TEXT)}
    app = client = None
    if a.http:   # the same handlers behind the launched app, through gradio_client
        from gradio_client import Client, handle_file
        app = create_app(a.run_dir, d.models)
        app.launch(server_name="127.0.0.1", share=False, prevent_thread_lock=True, quiet=True, inline=False)
        client = Client(app.local_url, verbose=False)
        hweights = iter([i / 20 for i in range(20)] * a.repeats)
        paths["http_submit_s"] = lambda: client.predict(handle_file(image), TEXT, 0.6, False, api_name="/analyze")
        paths["http_slider_s"] = lambda: client.predict(next(hweights), api_name="/refuse")
        for name in ("http_submit_s", "http_slider_s"):
            paths[name]()
    # round robin, so that load from other processes on the machine falls on every path alike
    times: dict[str, list[float]] = {k: [] for k in paths}
    try:
        for _ in range(a.repeats):
            for k, fn in paths.items():
                times[k] += _times(fn, 1)
    finally:
        if app is not None:
            app.close()
    stats = {k: _summary(v) for k, v in times.items()}
    submit_t, slider_t = stats["submit_s"], _summary(times["slider_s"], 1000)
    res = {"run_dir": str(a.run_dir), "title": d.models.title, "profile": d.models.cfg.profile,
           "load_models_s": load_s, "submit_s": submit_t, "slider_ms": slider_t,
           "submit_parts": {k: stats[k] for k in ("detect_crop_s", "image_branch_s", "text_branch_s")},
           "submit_over_slider": submit_t["median"] * 1000 / slider_t["median"], "limits": LIMITS,
           "within_limits": {"submit": submit_t["median"] <= LIMITS["submit_s"],
                             "slider": slider_t["median"] <= LIMITS["slider_ms"]}}
    if a.http:
        res["http"] = {"submit_s": stats["http_submit_s"], "slider_ms": _summary(times["http_slider_s"], 1000)}
    res["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                      "load_avg_1min": [load_before, os.getloadavg()[0]]}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{res['title']}\nmodels loaded in {load_s:.1f} s (once per server)")
        print(f"submit (server): median {submit_t['median']:.3f} s, min {submit_t['min']:.3f} s "
              f"[limit {LIMITS['submit_s']} s]; parts (median): " +
              ", ".join(f"{k[:-2]} {v['median'] * 1000:.0f} ms" for k, v in res["submit_parts"].items()))
        print(f"slider (server): median {slider_t['median']:.3f} ms, max {slider_t['max']:.2f} ms "
              f"[limit {LIMITS['slider_ms']} ms]; a submit costs {res['submit_over_slider']:.0f}x a slider move")
        if a.http:
            h = res["http"]
            print(f"through gradio_client (round trip, median): submit {h['submit_s']['median']:.3f} s, "
                  f"slider {h['slider_ms']['median']:.1f} ms")
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

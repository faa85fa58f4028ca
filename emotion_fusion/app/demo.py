"""The interactive page (DESIGN.md section 8): a face and a sentence in, each branch and the fusion out.

    python -m emotion_fusion demo --run-dir runs/offline [--host 127.0.0.1] [--port 7860]
    ef.demo("runs/offline")            # in Jupyter: renders inline, returns the app

A submit crops the face (`faces.py`), scores it and the text with the run's calibrated branches and
caches both probability vectors in the session; the weight slider only re-fuses them (no model call).
Every bad input ends as one message on the page; the server keeps serving.
"""
from __future__ import annotations

import html
import logging
import os
import signal
import threading
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before gradio is imported anywhere; never phone home

import numpy as np

from emotion_fusion.data.files import MAX_IMAGE_BYTES
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError

from . import notes, uploads
from .inputs import MAX_TEXT_CHARS, check_text  # noqa: F401 - the page's text rule is the CLI's

INLINE_HEIGHT = 1150     # px of the notebook's iframe: the whole page without an inner scroll bar
# Uploads are users' face photos. An upload's bytes are read into the session's own state as soon as it
# arrives (the page keeps sending its path, so a second Submit scores the same photo from memory), and
# its file is deleted right after it is first scored; every file this app put in gradio's cache (an
# upload never scored, the crop shown) once it is CACHE_AGE seconds old, an unscored upload also when its
# session ends, and all of them when the server stops. The bytes go when the image is cleared or replaced
# or the tab closes.
CACHE_AGE = 60
RANDOM_INIT = "RANDOM-INIT"
_BANNER = "background:#fff4e5;border:2px solid #d9480f;border-radius:6px;padding:10px;color:#5c1a00"
log = logging.getLogger(__name__)


class _Models:
    """The one adapter between the page and the package: a run's `inference.Predictor` (both trained
    branches, calibrated with the run's temperatures), loaded once."""

    def __init__(self, run_dir: Path, cfg, info: dict, results: dict, predictor):
        self.run_dir, self.cfg, self.info, self.results = run_dir, cfg, info, results
        self._predictor = predictor

    @classmethod
    def load(cls, run_dir: str | Path) -> "_Models":
        """Load a finished run's branches, or raise a one-line InputError saying what is wrong."""
        from emotion_fusion.runs import RESULTS, read_json

        from .inference import load_predictor
        src = Path(run_dir)
        pred = load_predictor(src)     # refuses a dir without a valid manifest ("incomplete ... re-run")
        results = read_json(src / RESULTS) if (src / RESULTS).is_file() else {}
        return cls(src, pred.config, pred.info, results, pred)

    @property
    def title(self) -> str:
        return str(self.results.get("title") or self.info.get("title") or "")

    @property
    def weights(self) -> dict | None:
        """Where each branch's weights come from (results.json's `weights`, run_info's, or recomputed from
        an older run's history: its title may be stale); None when the run holds none of them."""
        return self.results["weights"] if isinstance(self.results.get("weights"), dict) else self.cfg.run_weights(self.info)

    @property
    def random_init(self) -> bool:     # without `weights` or a history to recompute them, the title is all there is
        titles = self.title + str(self.info.get("title", ""))
        return bool(self.weights["random_init"]) if self.weights is not None else RANDOM_INIT in titles

    @property
    def random_branches(self) -> list[str]:
        """The branches used untrained from random weights ([] when the run cannot say)."""
        return list((self.weights or {}).get("random_init", []))

    def face_probs(self, pixels: np.ndarray) -> np.ndarray:
        """(48, 48) uint8 face -> (7,) calibrated probabilities."""
        return self._predictor.image_probs(pixels[None])[0]

    def text_probs(self, text: str) -> np.ndarray:
        """One text -> (7,) calibrated probabilities."""
        return self._predictor.text_probs([text])[0]


# --- handlers (plain functions of plain values: tested directly, wired to the page below) -------------
def _probs_dict(p) -> dict[str, float]:
    return {c: float(v) for c, v in zip(CLASSES, p)}


class Demo:
    """The page's state and handlers for one run directory (`models` None: `error` says why)."""

    def __init__(self, run_dir: str | Path, models: _Models | None = None):
        self.run_dir, self.models, self.error = Path(run_dir), models, None
        if models is None:
            try:
                self.models = _Models.load(run_dir)
            except InputError as e:   # shown on the page; each submit repeats it
                self.error = str(e)

    def header(self) -> str:
        """Markdown: the run, its profile and branches."""
        if self.models is None:
            return f"**Run directory:** `{self.run_dir}`"
        m = self.models
        return (f"**Run directory:** `{self.run_dir}` · **profile:** `{m.cfg.profile}` · "
                f"**fusion rule:** {m.cfg.fusion_rule}\n\n{m.title}")

    def warning(self) -> str:
        """HTML for the banner: a run that cannot be used, or random-init weights; else empty."""
        if self.error:
            head, body = "⛔ This run cannot be used", self.error
        elif self.models.random_init:
            names = getattr(self.models, "random_branches", [])     # [] when the run cannot say which
            which = (f"This run's {' and '.join(names)} " + ("branches use" if len(names) > 1 else "branch uses")
                     + " random weights. " + " ".join(f"{b.capitalize()} branch: {self.models.weights[b]}."
                                                     for b in names)
                     if names else "Some of this run's branches use random weights (its title says RANDOM-INIT).")
            head, body = ("⚠️ Random-init weights", f"{which} Its predictions show the mechanism, not the models' "
                          "ability: they say nothing about your face or your words. Use a run whose branches were "
                          "trained or pretrained.")
        else:
            return ""
        return (f'<div style="{_BANNER}"><strong>{html.escape(head)}</strong><br>{html.escape(body)}</div>')

    def analyze(self, image: str | None, text: str | None, weight: float, whole_image: bool = False,
                upload: dict | None = None):
        """Submit: (status, face crop, visual, text, fused, summary, note, cached state); see `submit`."""
        return self.submit(image, text, weight, whole_image, upload)[:8]

    def submit(self, image: str | None, text: str | None, weight: float, whole_image: bool = False,
               upload: dict | None = None):
        """`analyze`'s eight outputs and the session's upload (`uploads.keep_upload`): the photo at
        `image` is scored from `upload`'s bytes when they are that path's, else read from the file, which
        is deleted when it lies in gradio's cache."""
        from .faces import extract_face
        try:
            if self.error:
                raise InputError(self.error)
            if not image:
                raise InputError("no image; upload a photo of a face or take one with the webcam")
            upload = uploads.keep_upload(image, upload, required=True)   # before the file is deleted below
            text = check_text(text)
            face = extract_face(image, whole_image_if_none=bool(whole_image), raw=upload["bytes"])
            state = {"p_visual": self.models.face_probs(face.pixels).tolist(),
                     "p_text": self.models.text_probs(text).tolist(), "status": self._face_status(face)}
            status, crop = state["status"], face.pixels
            fused, summary, note = self._fused(weight, state)
        except Exception as e:   # noqa: BLE001 - the page must show a message, never a traceback
            return (_error_message(e), None, None, None, None, "", "", None, upload)
        finally:
            uploads.forget_upload(image)
        return (status, crop, _probs_dict(state["p_visual"]), _probs_dict(state["p_text"]),
                fused, summary, note, state, upload)

    def refuse(self, weight: float, state: dict | None):
        """Slider moved: (status, fused, summary, note) from the cached probabilities, no model call."""
        if not state:
            return "Submit a face and a text first; the slider then re-weighs their results.", None, "", ""
        try:
            fused, summary, note = self._fused(weight, state)
        except Exception as e:   # noqa: BLE001
            return _error_message(e), None, "", ""
        return state.get("status", ""), fused, summary, note

    def _face_status(self, face) -> str:
        if face.crop:
            return ("No face detected, but the image is small (as FER2013's 48x48 faces are): it was scored "
                    "whole, as a face crop.")
        if face.box is None:
            return "No face found: the whole image was scored, as you asked."
        more = f" ({face.n_faces} faces found; the largest was used)" if face.n_faces > 1 else ""
        return f"Face found and scored{more}."

    def _fused(self, weight: float, state: dict) -> tuple[dict, str, str]:
        from emotion_fusion.scoring.fusion import fuse
        w, rule = float(weight), self.models.cfg.fusion_rule
        p_v, p_t = np.asarray(state["p_visual"])[None], np.asarray(state["p_text"])[None]
        p_f = fuse(p_v, p_t, w, rule=rule)[0]
        label, face_label, text_label = (CLASSES[int(np.argmax(p))] for p in (p_f, p_v[0], p_t[0]))
        agree = face_label == text_label
        summary = (f"**Fused: {label}** ({p_f.max():.0%}) at w = {w:.2f} (visual share, {rule} rule)\n\n"
                   f"Face: **{face_label}** · words: **{text_label}** · "
                   + ("**the face and the words agree**" if agree else "**the face and the words disagree**"))
        note = f"**{label.capitalize()}.** {notes.emotion_note(label)}"
        if not agree:
            note += f"\n\n**{face_label.capitalize()} and {text_label}.** {notes.pair_note(face_label, text_label)}"
        return _probs_dict(p_f), summary, f"{note}\n\n*{notes.DISCLAIMER}*"


def _keep_on_page(image: str | None, upload: dict | None):
    """image.change: (the session's upload, status); a file that cannot be read is said on the page."""
    try:
        return uploads.keep_upload(image, upload), ""
    except Exception as e:   # noqa: BLE001 - e.g. over MAX_IMAGE_BYTES; Submit says it again
        return None, _error_message(e)


def _forget_kept(upload: dict | None) -> None:
    """Session over (tab closed): its upload's file goes too, if gradio's cache still holds it."""
    if upload:
        uploads.forget_upload(upload.get("path"))


def _error_message(e: Exception) -> str:
    if isinstance(e, InputError):
        return f"⚠️ {e}"
    log.exception("demo handler failed")   # the traceback goes to the server log, not the page
    return f"⚠️ Something went wrong ({type(e).__name__}: {e}). The server is still running; try again."


# --- the page ----------------------------------------------------------------------------------------
def _image_input(gr):
    """gr.Image whose upload step lets a non-image through to `analyze`, which names the file and the
    fix (Gradio's own preprocessing would end in a generic error toast). Wrapped on the instance: a
    gr.Image subclass would make gradio write a demo.pyi stub beside this file at import time."""
    image = gr.Image(type="filepath", sources=["upload", "webcam"], label="Your face (photo or webcam)",
                     elem_id="face-input", image_mode=None)   # None: the upload's own path, never a converted copy
    strict = image.preprocess

    def lenient(payload):
        try:
            return strict(payload)
        except Exception:   # noqa: BLE001 - not decodable: `faces.open_image` says so on the page
            return str(payload.path) if payload is not None and payload.path else None

    image.preprocess = lenient
    return image


def create_app(run_dir: str | Path, models: _Models | None = None):
    """The gradio Blocks for RUN_DIR (not launched). An unusable run dir gives a page that says why."""
    import gradio as gr
    d = Demo(run_dir, models)
    weight = d.models.cfg.fusion_weight if d.models else 0.6
    with gr.Blocks(title="Emotion fusion demo", analytics_enabled=False,
                   delete_cache=(CACHE_AGE, CACHE_AGE)) as app:
        gr.Markdown("# Emotion fusion: a face and a sentence")
        gr.Markdown(d.header(), elem_id="run-info")
        gr.HTML(d.warning(), elem_id="run-warning", visible=bool(d.warning()))
        with gr.Row():
            with gr.Column():
                image = _image_input(gr)
                whole = gr.Checkbox(label="If no face is found, use the whole image", value=False,
                                    elem_id="whole-image")
                text = gr.Textbox(label="How do you feel? (one or two sentences)", lines=2, elem_id="text-input")
                submit = gr.Button("Submit", variant="primary", elem_id="submit")
                slider = gr.Slider(0.0, 1.0, value=weight, step=0.05, elem_id="weight",
                                   label="Fusion weight: visual share (0 = words only, 1 = face only)")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                summary = gr.Markdown(elem_id="fused-summary")
                fused = gr.Label(num_top_classes=len(CLASSES), label="Fused", elem_id="fused")
                note = gr.Markdown(elem_id="note")
        with gr.Row():
            crop = gr.Image(label="The face that was scored (48x48, as in training)", type="numpy",
                            interactive=False, elem_id="crop", height=160)
            visual = gr.Label(num_top_classes=len(CLASSES), label="Face branch", elem_id="visual")
            textual = gr.Label(num_top_classes=len(CLASSES), label="Text branch", elem_id="textual")
        gr.Markdown(f"*{notes.DISCLAIMER}*", elem_id="disclaimer")
        state = gr.State(None)
        upload = gr.State(None, delete_callback=_forget_kept)   # this session's photo (`uploads.keep_upload`)
        image.change(_keep_on_page, [image, upload], [upload, status], api_name="keep_upload",
                     show_progress="hidden")
        submit.click(d.submit, [image, text, slider, whole, upload],
                     [status, crop, visual, textual, fused, summary, note, state, upload], api_name="analyze")
        slider.change(d.refuse, [slider, state], [status, fused, summary, note], api_name="refuse",
                      trigger_mode="always_last", show_progress="hidden")
    return app


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
        return get_ipython() is not None and type(get_ipython()).__name__ != "TerminalInteractiveShell"
    except ImportError:
        return False


def demo(run_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
         block: bool | None = None):
    """Launch the page for RUN_DIR on host:port (local only, never shared) and return the app.

    In Jupyter it renders inline and returns at once (`app = ef.demo(RUN_DIR)`; `app.close()` stops it).
    Elsewhere it blocks until Ctrl-C, unless `block=False`. An unusable run dir gives a page saying why.
    """
    check_host(host)
    app = create_app(run_dir)
    return _launch(app, host, port, inline=_in_notebook(), block=block)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int | None = None) -> None:
    """The CLI: fail in seconds on an unusable run dir (one line, exit 2), else serve until Ctrl-C."""
    check_host(host)
    models = _Models.load(run_dir)
    _launch(create_app(run_dir, models), host, port, inline=False, block=True)


def check_host(host: str) -> str:
    """`host` if this machine can listen on it, else a one-line InputError (gradio's own message for an
    address it cannot bind is "Cannot find empty port")."""
    import socket
    try:
        info = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(info[0], socket.SOCK_STREAM) as s:
            s.bind(info[4])
    except OSError as e:
        raise InputError(f"--host {host} is not an address of this machine ({e.strerror or e}); use 127.0.0.1 "
                         "(this machine only)") from None
    return host


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_on_sigterm():
    """SIGTERM stops the server as Ctrl-C does (the previous handler, to restore); None off the main
    thread, where Python cannot install handlers."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def _launch(app, host: str, port: int | None, inline: bool, block: bool | None):
    import gradio as gr
    block = not inline if block is None else block
    try:   # quiet: gradio's own banner advertises share=True, which this project never uses
        app.launch(server_name=host, server_port=port, share=False, inline=inline, inbrowser=False,
                   prevent_thread_lock=True, quiet=True, max_file_size=MAX_IMAGE_BYTES,
                   height=INLINE_HEIGHT)
    except OSError as e:   # port taken
        raise InputError(f"cannot serve on {host}:{port} ({e}); pick another port") from None
    if not block:
        return app
    print(f"serving on {app.local_url} (local only; Ctrl-C or SIGTERM stops it)", flush=True)
    previous = _stop_on_sigterm()
    try:
        app.block_thread()     # returns on Ctrl-C (or SIGTERM), after closing the server
    finally:
        gr.close_all()         # closing runs the cache cleanup: uploads are deleted on exit
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return app

"""The `full` profile's weight files in their real formats, built from random init (issue 10, items 4-5).

No machine here can download weights, so the tests write the files a user's machine would hold, in the
layouts the libraries leave them in (tools/random_weights.py: a torchvision hub ResNet-50; CLIP ViT-B/32 in
the HF cache as open_clip_model.safetensors and as open_clip_pytorch_model.bin, and as OpenAI's TorchScript
archive in ~/.cache/clip). Then: every format loads bit for bit, a `full` run completes with them at tiny
caps, replacing one makes the cached run stale, and a broken or wrong file stops a run in one line, saying
what to do, before any data is decoded.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from emotion_fusion import pipeline
from emotion_fusion.branches.text import load_text_model, locate_weights
from emotion_fusion.config import Config
from emotion_fusion.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from random_weights import (  # noqa: E402
    FP16_PARTS,
    OPENAI_FILE,
    RESNET_FILE,
    clip_state,
    resnet_state,
    save_hf_cached,
    save_hub_resnet,
    save_openai_archive,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Each real-format file once per module, in its own cache folder (about 1 GB, written in seconds)."""
    root = tmp_path_factory.mktemp("weights")
    clip = clip_state()
    return {"clip": clip, "root": root,
            "resnet": save_hub_resnet(resnet_state(), root / "torch"),
            "hf": save_hf_cached(clip, root / "hf", "safetensors"),    # what open_clip downloads
            "hf_bin": save_hf_cached(clip, root / "hf_bin", "bin"),     # its other file
            "openai": save_openai_archive(clip, root / "home" / ".cache" / "clip" / OPENAI_FILE)}


@pytest.fixture
def use_caches(tmp_path, monkeypatch, weight_files):
    """`use_caches(resnet=True, clip="hf"|"hf_bin"|"openai"|None)`: point TORCH_HOME / HF_HOME / HOME at
    the module's files or at empty folders, with no network. Returns the three folders."""
    def use(resnet: bool = True, clip: str | None = "hf") -> dict[str, Path]:
        root = weight_files["root"]
        homes = {"TORCH_HOME": root / "torch" if resnet else tmp_path / "torch",
                 "HF_HOME": root / clip if clip in ("hf", "hf_bin") else tmp_path / "hf",
                 "HOME": root / "home" if clip == "openai" else tmp_path / "home"}
        for env, folder in homes.items():
            folder.mkdir(exist_ok=True)
            monkeypatch.setenv(env, str(folder))
        for env in ("HF_HUB_CACHE", "XDG_CACHE_HOME"):
            monkeypatch.delenv(env, raising=False)
        monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
        return homes
    return use


def _assert_clip_equals(net, state: dict, fp16_release: bool) -> None:
    """`net` holds `state`'s values exactly (rounded to fp16 where OpenAI's release stores fp16)."""
    got = net.state_dict()
    for key in ("visual.conv1.weight", "visual.proj", "token_embedding.weight",
                "transformer.resblocks.11.attn.in_proj_weight", "ln_final.weight", "logit_scale"):
        want = state[key].half().float() if fp16_release and any(p in key for p in FP16_PARTS) else state[key]
        torch.testing.assert_close(got[key].float().cpu(), want, rtol=0, atol=0)


# ---------------------------------------------------------------- item 4: both formats load
@pytest.mark.parametrize("kind, file", [("hf", "open_clip_model.safetensors"), ("hf_bin", "open_clip_pytorch_model.bin"),
                                        ("openai", OPENAI_FILE)])
def test_openai_clip_found_in_its_cache_and_loaded_exactly(kind, file, weight_files, use_caches, caplog):
    use_caches(resnet=False, clip=kind)
    assert locate_weights("ViT-B/32", "openai").name == file
    caplog.set_level(logging.INFO)
    model, tokenize = load_text_model("ViT-B/32", weights="openai")
    assert model.label == "CLIP ViT-B/32 (openai)"
    _assert_clip_equals(model.net, weight_files["clip"], fp16_release=kind == "openai")
    assert tokenize(["a happy face"]).shape == (1, 77)
    # open_clip logs "No pretrained weights loaded ... initialized randomly" for the network it builds
    # before the file is read; that would be false here, so it is not shown
    assert not [r for r in caplog.records if "pretrained weights" in r.getMessage()]


def test_openai_archive_given_as_a_path(weight_files):
    model, _ = load_text_model("ViT-B/32", weights=str(weight_files["openai"]))
    assert model.label == f"CLIP ViT-B/32 (file {OPENAI_FILE})"
    _assert_clip_equals(model.net, weight_files["clip"], fp16_release=True)


# ---------------------------------------------------------------- item 4: a full run with these files
TINY = ["epochs=1", "train_per_class=6", "text_train_per_class=6", "val_per_class=4", "test_per_class=4"]


@pytest.mark.data
def test_full_profile_runs_on_real_format_files_and_their_replacement_is_stale(tmp_path, use_caches, fer_path,
                                                                                  go_path, capsys):
    from emotion_fusion import runs
    from emotion_fusion.cli import main

    homes = use_caches(resnet=False, clip=None)     # private copies: this test replaces them
    save_hub_resnet(resnet_state(), homes["TORCH_HOME"])
    save_hf_cached(clip_state(), homes["HF_HOME"])
    out = tmp_path / "full"
    args = ["run", "--profile", "full", "--fer2013", fer_path, "--goemotions", go_path, "--out", out, "--json",
            "--set", *TINY]
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["reused_cached_outputs"] is False
    info = json.loads((out / "run_info.json").read_text())
    assert info["branches"].startswith("image: ResNet-50 ImageNet IMAGENET1K_V1 → trained 1 epoch at 224px; "
                                       "text: CLIP ViT-B/32 (openai) + ")   # + the head chosen on validation
    assert {(r["model"], r["split"]) for r in results["rows"]} >= {("visual", "test"), ("text", "test"),
                                                                   ("fusion", "test")}
    assert "models/image.pth" in runs.verify(out)["files"]      # complete: every file matches the manifest

    # another fusion weight: the cached outputs serve
    assert main([str(a) for a in args[:-len(TINY) - 1] + ["--fusion-weight", "0.5", "--set", *TINY]]) == 0
    assert json.loads(capsys.readouterr().out)["reused_cached_outputs"] is True

    # the cache key carries the signatures of the files found in TORCH_HOME and the HF cache
    cfg = Config.from_profile("full").with_overrides(TINY)
    key = lambda: pipeline._key(cfg, fer_path, go_path)  # noqa: E731
    assert runs.is_complete(out, key())
    save_hub_resnet(resnet_state(seed=3), homes["TORCH_HOME"])
    assert not runs.is_complete(out, key()), "a replaced ResNet-50 hub file must make the run stale"
    stale = key()
    save_hf_cached(clip_state(seed=4), homes["HF_HOME"])
    assert key() != stale, "a replaced CLIP file in the HF cache must change the cache key"


# ---------------------------------------------------------------- item 5: bad files stop a run at once
def _resnet_missing_key(homes):
    state = resnet_state()
    del state["layer3.2.bn2.running_var"]
    save_hub_resnet(state, homes["TORCH_HOME"])


def _resnet_cut_short(homes):
    path = save_hub_resnet(resnet_state(), homes["TORCH_HOME"])
    path.write_bytes(path.read_bytes()[: 1 << 20])            # an interrupted download


def _clip_b16(homes):
    save_hf_cached(clip_state("ViT-B-16"), homes["HF_HOME"])


def _clip_archive_cut_short(homes):
    path = save_openai_archive(clip_state(), homes["HOME"] / ".cache" / "clip" / OPENAI_FILE)
    path.write_bytes(path.read_bytes()[: 1 << 20])


def _clip_hf_empty(homes):
    path = save_hf_cached(clip_state(), homes["HF_HOME"])
    path.resolve().write_bytes(b"")


REDOWNLOAD = "delete it and download it again, or pass "
ZIP_CUT = r"\(RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory\)"


@pytest.mark.parametrize("resnet, clip, spoil, message", [
    (False, "hf", _resnet_missing_key,
     rf"^image weights \S+/hub/checkpoints/{RESNET_FILE} are not a ResNet-50 state_dict "
     rf"\(missing \['layer3\.2\.bn2\.running_var'\], unexpected \[\]\); {REDOWNLOAD}.*--set image_weights=PATH\)$"),
    (False, "hf", _resnet_cut_short,
     rf"^cannot read image weights \S+/hub/checkpoints/{RESNET_FILE} {ZIP_CUT}; if it is corrupt or truncated "
     rf"\(an interrupted download\?\) delete it and download it again, or .*--set image_weights=PATH\)$"),
    (True, None, _clip_b16,
     r"^cannot load CLIP ViT-B/32 weights from \S+/open_clip_model\.safetensors \(RuntimeError: size mismatch for "
     r"visual\.conv1\.weight: copying a param with shape torch\.Size\(\[768, 3, 16, 16\]\) from checkpoint, the "
     r"shape in current model is torch\.Size\(\[768, 3, 32, 32\]\)\); it holds another model: give an open_clip "
     r"ViT-B-32 checkpoint, or pass another file with .*--set text_weights=PATH\)$"),
    (True, None, _clip_archive_cut_short,
     rf"^cannot load CLIP ViT-B/32 weights from \S+/\.cache/clip/{OPENAI_FILE} {ZIP_CUT}; it is corrupt or "
     rf"truncated \(an interrupted download\?\): {REDOWNLOAD}.*--set text_weights=PATH\)$"),
    (True, None, _clip_hf_empty,
     rf"^cannot load CLIP ViT-B/32 weights from \S+/open_clip_model\.safetensors \(\w+(: [^)]+)?\); it is corrupt "
     rf"or truncated \(an interrupted download\?\): {REDOWNLOAD}.*--set text_weights=PATH\)$"),
], ids=["resnet-missing-key", "resnet-cut-short", "clip-is-vit-b16", "clip-archive-cut-short", "clip-file-empty"])
def test_bad_weight_files_stop_the_run_in_one_line_before_any_data(resnet, clip, spoil, message, use_caches,
                                                                    monkeypatch, tmp_path, fer_tree, goemotions_dir):
    homes = use_caches(resnet=resnet, clip=clip)
    spoil(homes)
    for reader in ("load_fer2013", "load_goemotions"):
        monkeypatch.setattr(f"emotion_fusion.data.{reader}",
                            lambda *a, **k: pytest.fail("data was read before the weights were checked"))
    with pytest.raises(InputError, match=message) as err:
        pipeline.run(Config.from_profile("full", progress=False), fer2013=fer_tree(tmp_path / "fer"),
                     goemotions=goemotions_dir(tmp_path / "go"), out=tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()

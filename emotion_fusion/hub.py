"""Where the libraries keep what they download, and whether the network answers at all.

Shared by the dataset loaders (GoEmotions from the Hugging Face hub) and the weight lookups
(branches/weights.py). Imports nothing heavy: a bounded TCP probe, never a library's own retries.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

# --- defaults -------------------------------------------------------------------------------------
PROBE_TIMEOUT_S = 3.0              # a reachability probe never waits longer than this
OFFLINE_ENV = "EMOTION_FUSION_OFFLINE"   # "1": never probe, never download (tests, air-gapped runs)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, from HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME at call time.

    huggingface_hub resolves these once, when it is imported; reading them here means a test (or a
    notebook cell) that sets HF_HOME after import still gets the folder it asked for.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def _offline_by_env() -> bool:
    return os.environ.get(OFFLINE_ENV) == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def is_online(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the url's host opens within `timeout` seconds.

    The probe runs in a daemon thread because name resolution ignores socket timeouts; whatever the
    resolver does, the caller gets an answer after `timeout` seconds at most.
    """
    if _offline_by_env():
        return False
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])

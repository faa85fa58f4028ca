"""Progress of long loops: live while they run, at most one line left behind.

    with Bar(total=len(x), desc="epoch 1/2", unit="img") as bar:
        for batch in ...:
            bar.update(len(batch), loss=f"{loss:.3f}")
        bar.summary = "epoch 1: train loss 1.71 | val acc 0.32"     # the one line kept (None: nothing)
    note("epoch 1/2: 6,400/18,987 images ...")                      # for whoever watches, never saved

In Jupyter the bar is one ipywidgets bar shown through a display handle; when the loop ends the handle is
updated in place to the summary line, so the saved notebook and its HTML export keep that line and
nothing of the bar. Under papermill the update is not echoed, so the summary and the `note` lines go to
the kernel's own stderr: papermill's terminal (or the Jupyter server's log), never into the notebook.
In a terminal the bar is tqdm's on stderr, cleared at the end, and the summary is printed to stdout.
"""
from __future__ import annotations

import os
import sys


def in_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel: where tqdm.auto would draw a widget."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def note(line: str) -> None:
    """A progress line for a live reader only: the terminal, never a saved notebook."""
    if not in_kernel():
        print(line, file=sys.stderr, flush=True)
        return
    try:      # ipykernel watching fd 2: fileno() is its copy of the kernel's real stderr, outside the notebook
        os.write(sys.stderr.fileno(), (line + "\n").encode())
    except (OSError, ValueError, AttributeError):   # io.UnsupportedOperation is an OSError too
        if sys.__stderr__ is not None:              # fd 2 itself is not watched: it is the real stderr
            sys.__stderr__.write(line + "\n")
            sys.__stderr__.flush()


class Bar:
    """One live progress bar for a loop; on exit, leaves `summary` (or nothing) behind.
    `enabled=False`: no bar and no summary."""

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True):
        self.enabled, self.summary, self._handle = enabled, None, None
        self._bar = None
        if not enabled:
            return
        if in_kernel():
            try:
                from IPython.display import display
                from tqdm.notebook import tqdm as widget_tqdm
                self._bar = widget_tqdm(total=total, desc=desc, unit=unit, leave=False, display=False,
                                        mininterval=1)
                self._handle = display(self._bar.container, display_id=True)
                return
            except ImportError:        # no ipywidgets: tqdm's text bar in the cell, cleared at the end
                pass
        from tqdm import tqdm
        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, mininterval=2, file=sys.stderr)

    def update(self, n: int = 1, **postfix) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the bar; keep `summary` (a widget's display becomes that line, else it is printed)."""
        if self._bar is None:
            return
        self._bar.close()
        self._bar = None
        if self._handle is not None:
            self._handle.update({"text/plain": self.summary or ""}, raw=True)
            if self.summary:
                note(self.summary)
        elif self.summary:
            print(self.summary, flush=True)


def bar_iter(iterable, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True):
    """Iterate with a Bar that leaves nothing behind (for loops whose result is reported elsewhere)."""
    with Bar(len(iterable) if total is None else total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update()

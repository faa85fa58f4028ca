"""Progress of long loops: live while they run, at most one line left behind.

    with Bar(total=len(x), desc="epoch 1/2", unit="img") as bar:
        for batch in ...:
            bar.update(len(batch), loss=f"{loss:.3f}")
        bar.summary = "epoch 1: train loss 1.71 | val acc 0.32"     # the one line kept (None: nothing)
    note("epoch 1/2: 6,400/18,987 images ...")                      # for whoever watches, never saved

In Jupyter the bar is one HTML `<progress>` bar in a display updated in place (at most every UPDATE_S
seconds); when the loop ends the display becomes the summary line, so the saved notebook and its HTML
export keep that line and nothing of the bar. The bar is first shown as HTML only: papermill echoes a
display's text/plain to its terminal when it appears (and never its updates), which printed a start line
with zeros for every loop; now the terminal gets the loop's end line instead (the summary, or for a loop
of at least SHORT_S seconds without one, its final count, time and rate), and nothing for short loops. It is not an ipywidgets bar (tqdm.notebook): papermill saves
every widget model's state into the executed notebook, and nbconvert then loads the widget manager from a
CDN into the report. Under papermill the in-place updates are not echoed, so the summary and the `note`
lines go to the kernel's own stderr: papermill's terminal (or the Jupyter server's log), never into the
notebook. In a terminal the bar is tqdm's on stderr, cleared at the end, and the summary goes to stdout.
"""
from __future__ import annotations

import html
import os
import sys
import time

UPDATE_S = 0.5      # seconds between redraws of a notebook bar: live enough, few messages
SHORT_S = 3.0       # a loop without a summary that ends sooner leaves no line in papermill's terminal


def in_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
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
        self.enabled, self.summary = enabled, None
        self.total, self.desc, self.unit, self.n, self.postfix = max(int(total), 0), desc, unit, 0, {}
        self._bar = self._handle = None
        self._start = self._shown = time.perf_counter()
        if not enabled:
            return
        if in_kernel():
            from IPython.display import display
            self._handle = display({"text/html": self._bundle()["text/html"]}, raw=True, display_id=True)
        else:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, mininterval=2, file=sys.stderr)

    def _bundle(self) -> dict:
        """The notebook display: an HTML <progress> bar, and a plain line for text-only readers."""
        elapsed = time.perf_counter() - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        line = (f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}, {elapsed:.0f} s, "
                f"{rate:,.0f} {self.unit}/s{extra}")
        bar = f'<progress value="{self.n}" max="{max(self.total, 1)}" style="width:30ex"></progress>'
        return {"text/html": f"<div>{bar} {html.escape(line)}</div>", "text/plain": line}

    def update(self, n: int = 1, **postfix) -> None:
        if not self.enabled:
            return
        self.n += n
        self.postfix.update(postfix)
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
        elif self._handle is not None and time.perf_counter() - self._shown >= UPDATE_S:
            self._shown = time.perf_counter()
            self._handle.update(self._bundle(), raw=True)

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the bar; keep `summary` (the notebook display becomes that line, else it is printed)."""
        if self._handle is not None:
            end = self._bundle()["text/plain"]
            self._handle.update({"text/plain": self.summary or ""}, raw=True)
            if self.summary:
                note(self.summary)
            elif time.perf_counter() - self._start >= SHORT_S:
                note(end)
        elif self._bar is not None:
            self._bar.close()
            if self.summary:
                print(self.summary, flush=True)
        self._bar = self._handle = None


def bar_iter(iterable, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True):
    """Iterate with a Bar that leaves nothing behind (for loops whose result is reported elsewhere)."""
    with Bar(len(iterable) if total is None else total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update()

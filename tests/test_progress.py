"""Progress (emotion_fusion.progress): a live bar that leaves at most its summary line behind. In a terminal
the bar goes to stderr and the summary to stdout; in a Jupyter kernel run by papermill the saved notebook
keeps only the summary line while papermill's terminal sees the live lines."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import nbformat

from emotion_fusion.progress import Bar, bar_iter, note


def test_terminal_bar_leaves_only_its_summary_on_stdout(capsys):
    with Bar(4, "epoch 1/2", unit="img") as bar:
        for _ in range(4):
            bar.update(1, loss="0.5")
        note("epoch 1/2: 2/4 images")
        bar.summary = "epoch 1/2: val acc 0.300"
    out, err = capsys.readouterr()
    assert out == "epoch 1/2: val acc 0.300\n"
    assert "epoch 1/2: 2/4 images" in err


def test_disabled_bar_prints_nothing(capsys):
    with Bar(3, "quiet", enabled=False) as bar:
        bar.update(3)
        bar.summary = "never shown"
    assert list(bar_iter(range(3), "quiet too", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


_CELL = """import time
from emotion_fusion.progress import Bar, note
with Bar(20, "epoch 1/1", unit="img") as bar:
    for i in range(20):
        bar.update(1, loss="0.5")
        time.sleep(0.05)
        if i == 10:
            note("HEARTBEAT 10/20 images")
    bar.summary = "epoch 1/1: train loss 1.0 | val acc 0.300"
print("after the loop")
"""


def _papermill(tmp_path, repo, cell: str):
    """Run one code cell as a notebook under papermill (terminal logging on): (its terminal text, the
    executed notebook's path)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    proc = subprocess.run([sys.executable, "-m", "papermill", "--log-output", "--no-progress-bar", str(src), str(out),
                           "--cwd", str(repo)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr, out


def test_under_papermill_the_notebook_keeps_one_line_and_the_terminal_sees_progress(tmp_path, repo):
    terminal, out = _papermill(tmp_path, repo, _CELL)
    assert "HEARTBEAT 10/20 images" in terminal and "epoch 1/1: train loss 1.0 | val acc 0.300" in terminal
    executed = json.loads(out.read_text())
    assert "widgets" not in executed["metadata"]            # no widget state saved (no CDN script in the report)
    outputs = executed["cells"][0]["outputs"]
    shown = [("".join(o["data"]["text/plain"]) if "data" in o else "".join(o["text"])) for o in outputs]
    assert shown == ["epoch 1/1: train loss 1.0 | val acc 0.300", "after the loop\n"]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)


_LOOPS = """import time
from emotion_fusion import progress
progress.SHORT_S = 0.5
for _ in progress.bar_iter(range(12), "predict"):      # short: nothing in the terminal
    pass
for _ in progress.bar_iter(range(4), "encode"):        # longer than SHORT_S: its end line only
    time.sleep(0.2)
"""


def test_under_papermill_the_terminal_gets_end_lines_not_start_lines(tmp_path, repo):
    terminal, out = _papermill(tmp_path, repo, _LOOPS)
    assert "predict:" not in terminal and "0/4" not in terminal and "0/12" not in terminal
    assert len(re.findall(r"encode: 4/4 it, \d+ s, [\d,]+ it/s", terminal)) == 1, terminal[-2000:]
    outputs = json.loads(out.read_text())["cells"][0]["outputs"]
    assert all("".join(o.get("data", {}).get("text/plain", "")) == "" for o in outputs)   # nothing kept


def test_the_notebook_display_is_an_html_progress_bar_with_a_plain_line():
    bar = Bar(20, "epoch 1/2", unit="img", enabled=False)
    bar.n, bar.postfix = 5, {"loss": "1.234"}
    shown = bar._bundle()
    assert shown["text/html"].startswith('<div><progress value="5" max="20"')
    assert shown["text/plain"].startswith("epoch 1/2: 5/20 img, ") and shown["text/plain"].endswith(", loss 1.234")

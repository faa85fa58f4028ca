"""Helpers for tests/test_lab.py: a JupyterLab server started as `make notebook` starts it, a kernel
driven over the server's websocket (Jupyter messaging protocol v5, JSON frames), and a headless Debian
chromium driving Lab's own menus through Selenium."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import requests
import websocket
from conftest import REPO, _real_data_root

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000"]


@dataclass
class Lab:
    """A running JupyterLab server (started by `make notebook`) on 127.0.0.1 with a random token."""
    url: str
    port: int
    token: str
    root: Path
    log: Path
    proc: subprocess.Popen

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """An authenticated request to the server (REST API or a page)."""
        return requests.request(method, self.url + path, headers={"Authorization": f"token {self.token}"},
                                timeout=60, **kw)

    def stop(self) -> None:
        """SIGTERM to make and the server (the server then shuts its kernels down); SIGKILL after 30 s."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _server_port(runtime: Path, proc: subprocess.Popen) -> int | None:
    """The port the server chose (it was started with --port 0), from its jpserver-<pid>.json runtime file."""
    for info in runtime.glob("jpserver-*.json"):
        try:
            return int(json.loads(info.read_text())["port"])
        except (ValueError, KeyError, OSError):     # being written
            return None
    return None


def start_lab(root: Path, home: Path, timeout: float = 120) -> Lab:
    """`make notebook` itself (so its flags and tools/jupyter/ settings are what is tested), serving `root`
    on a port the server picks itself (`--port 0`, read back from its runtime file: the test never picks
    one by binding and releasing a socket) with a random token:
    `jupyter lab --ip 127.0.0.1 --no-browser --port 0 --IdentityProvider.token=T`.

    `-o venv` keeps make from rebuilding the venv; PY is this interpreter. Lab's user settings, workspaces
    and runtime files go under `home`, so a run neither reads nor writes the user's own. Kernels inherit
    EMOTION_FUSION_DATA (the datasets, as `make demo` finds them) and PYTHONPATH (the repository's
    package, since `root` is not the repository)."""
    token = secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    env.pop("MPLBACKEND", None)          # kernels must use Jupyter's inline backend, as in Lab
    data = _real_data_root()
    if data is not None:
        env["EMOTION_FUSION_DATA"] = str(data)
    lab_args = (f"--no-browser --port 0 --IdentityProvider.token={token} --ServerApp.port_retries=0 "
                f"--ServerApp.root_dir={root}")
    cmd = ["make", "-s", "--no-print-directory", "-o", "venv", "notebook", f"PY={sys.executable}",
           f"LAB_ARGS={lab_args}"]
    log = home / "lab.log"
    with open(log, "wb") as out:         # own process group: stop() ends make and the server together
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    lab = Lab("", 0, token, root, log, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"make notebook exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if not lab.port:
            lab.port = _server_port(home / "runtime", proc) or 0
            lab.url = f"http://127.0.0.1:{lab.port}"
            if not lab.port:
                time.sleep(0.5)
                continue
        try:
            if lab.api("GET", "/api/status").status_code == 200:
                return lab
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    lab.stop()
    raise RuntimeError(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


class KernelChannel:
    """One client of a server-side kernel over /api/kernels/<id>/channels, as Lab's page is."""

    def __init__(self, lab: Lab, kernel_id: str):
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            header=[f"Authorization: token {lab.token}"], timeout=60)

    def execute(self, code: str, timeout: float = 120) -> tuple[list, dict]:
        """Run `code`; return its outputs (nbformat output nodes) and the execute_reply content."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": self.session,
                  "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        self.ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                 "channel": "shell", "buffers": []}))
        outputs, reply, idle, clear_next = [], None, False, False
        deadline = time.monotonic() + timeout
        while reply is None or not idle:    # the reply (shell) and the idle status (iopub) may come in any order
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the kernel did not finish within {timeout} s: {code[:200]!r}")
            self.ws.settimeout(left)
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind == "clear_output":
                if msg["content"].get("wait"):
                    clear_next = True
                else:
                    outputs.clear()
            elif kind in ("stream", "display_data", "execute_result", "error"):
                if clear_next:
                    outputs.clear()
                    clear_next = False
                outputs.append(nbformat.v4.output_from_msg(msg))
        return outputs, reply

    def close(self) -> None:
        self.ws.close()


class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: list[str] = []
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(" | ".join(" ".join(c.split()) for c in self._row))
            self._row = None

    def handle_data(self, data):
        if self._row:
            self._row[-1] += data


def table_rows(html: str) -> list[str]:
    """Each <tr> of `html` as its cells' text joined by " | " (the browser helper reads the DOM alike)."""
    parser = _Rows()
    parser.feed(html)
    return parser.rows


# Rows of the tables in the output of the `index`-th code cell of the open notebook, as in `table_rows`.
_CELL_ROWS_JS = """
const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')[arguments[0]];
cell.scrollIntoView();
return [...cell.querySelectorAll('.jp-OutputArea tr')].map(
    tr => [...tr.cells].map(c => c.textContent.split(/\\s+/).filter(Boolean).join(' ')).join(' | '));
"""
# Each code cell's prompt ("[3]:", "[*]:", "[ ]:") and whether its outputs show a Python traceback.
_PROMPTS_JS = """
return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')].map(c => [
    (c.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim(),
    [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).filter(
        t => t.includes('Traceback (most recent call last)')).join('\\n')]);
"""


class LabBrowser:
    """Headless Debian chromium (via chromium-driver) on the Lab page; records every URL it requests."""

    def __init__(self, lab: Lab, chromium: str, chromedriver: str, profile: Path, shots: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})    # the network log, to audit
        self.lab, self.urls, self.shots = lab, [], shots     # shots: where a timeout leaves a screenshot
        # the driver's path given explicitly: Selenium Manager (which would download one) never runs
        self.driver = webdriver.Chrome(options=opts, service=Service(chromedriver))

    def _drain_log(self) -> None:
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                self.urls.append(msg["params"]["request"]["url"])
            elif msg["method"] == "Network.webSocketCreated":
                self.urls.append(msg["params"]["url"])

    def _wait(self, what: str, timeout: float, check):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain_log()
            found = check()
            if found:
                return found
            time.sleep(1)
        shot = self.shots / "timeout.png"
        self.driver.save_screenshot(str(shot))
        prompts = [p for p, _ in self.driver.execute_script(_PROMPTS_JS)]
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; cell prompts {prompts}; "
                             f"screenshot {shot}")

    def open(self, path: str, timeout: float = 180) -> None:
        """Open `path` in Lab and wait until its kernel is idle."""
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.lab.url}/lab/tree/{path}?token={self.lab.token}")
        self._wait("the notebook and an idle kernel", timeout, lambda: self.driver.find_elements(
            By.CSS_SELECTOR,
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"))

    def run_all_from_menu(self, timeout: float) -> None:
        """Run > Run All Cells, then wait until every code cell has an execution count; a traceback fails."""
        for attempt in range(3):
            self._click_run_all()
            # Lab marks queued cells "[*]" at once: none means the click did not reach the menu item
            # (a Lumino menu can miss a click while it is still opening), so the menu is used again.
            try:
                self._wait("Run All Cells to queue the cells", 10, lambda: any(
                    p != "[ ]:" for p, _ in self.driver.execute_script(_PROMPTS_JS)))
                break
            except AssertionError:
                if attempt == 2:
                    raise

        def done():
            prompts = self.driver.execute_script(_PROMPTS_JS)
            errors = [err for _, err in prompts if err]
            assert not errors, "a cell failed in the browser:\n" + errors[0][-3000:]
            return prompts and all(re.fullmatch(r"\[\d+\]:", p) for p, _ in prompts)
        self._wait("Run All Cells to finish", timeout, done)

    def _click_run_all(self) -> None:
        """Open the Run menu of the menu bar and click its "Run All Cells" item, as a user would.

        A click on the menu bar can land while Lab is still settling and open nothing (seen once in CI on a
        slow machine: no menu in 30 s). Waiting longer for a menu that is not opening helps nothing, so the
        menu bar is clicked again, as a user would, when the item has not appeared in 10 s (3 tries)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        item_path = ("//*[@id='jp-mainmenu-run']//li[.//*[contains(@class,'lm-Menu-itemLabel') "
                     "and text()='Run All Cells']]")
        for attempt in range(3):
            if not self.driver.find_elements(By.XPATH, item_path):      # the menu is closed: open it
                menu = self.driver.find_element(
                    By.XPATH, "//*[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']")
                ActionChains(self.driver).move_to_element(menu).pause(0.3).click().perform()
            try:
                item = self._wait("Run All Cells in the Run menu", 10,
                                  lambda: self.driver.find_elements(By.XPATH, item_path))[0]
                break
            except AssertionError:
                if attempt == 2:
                    raise
        ActionChains(self.driver).move_to_element(item).pause(0.5).click().perform()

    def table_rows(self, code_index: int) -> list[str]:
        return self.driver.execute_script(_CELL_ROWS_JS, code_index)

    def foreign_requests(self) -> list[str]:
        """Every network URL (http, https, ws, wss) the browser requested other than the Lab server's own.

        Browser-internal schemes (chrome://, data:, blob:) never leave the machine and are not counted."""
        self._drain_log()
        local = (f"http://127.0.0.1:{self.lab.port}/", f"ws://127.0.0.1:{self.lab.port}/")
        return sorted({u for u in self.urls if re.match(r"(https?|wss?)://", u) and not u.startswith(local)})

    def quit(self) -> None:
        self.driver.quit()

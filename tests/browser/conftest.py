"""Real-browser fixtures: throw-away JupyterLab 4 / Notebook 7 servers driven by Playwright on Debian's chromium.

What works on these machines is written up in ../shared/browser-testing.md; in short:

* one server per kind ("lab", "notebook") for the whole pytest session, on a free localhost port, with
  its config, runtime, workspaces and root directories in a temp dir (nothing of the user's Jupyter
  set-up leaks in), a random token, news / update checks and the announcements pop-up off, and
  ``--expose-app-in-browser`` so ``window.jupyterapp`` drives the notebook;
* a server config file that wraps ``KernelWebsocketHandler.open`` to set TCP_NODELAY (jupyter_server
  never does; Nagle adds ~40 ms to every small comm message);
* chromium from ``shutil.which("chromium")`` (Playwright's own browser download does not work here);
* :class:`NotebookPage` writes a notebook into the server root, opens it in a fresh workspace, runs
  all cells through ``app.commands``, appends and runs extra cells and returns their text output,
  and deletes its kernel session when closed;
* a screenshot of every test (pass or fail) of every :class:`NotebookPage` the test used lands in
  ``test-artifacts/browser/``.

The tests are skipped (with the reason) only when chromium is not installed; CI installs it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--allow-file-access-from-files",  # harness pages (tests/widgets/harness.py) import the bundle from a file
]
SERVER_START_TIMEOUT = 90.0
#: Notebook 7 always logs this from its own settings loading; it is not ours.
KNOWN_CONSOLE_NOISE = ("Cannot read properties of undefined (reading 'schema')",)

# Written into the throw-away server's config dir. jupyter_server registers the handler class
# itself, so patching the class attribute before the app starts covers every kernel websocket.
NODELAY_CONFIG = '''\
import inspect
import os
import pathlib

from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

_original_open = KernelWebsocketHandler.open


async def _open_without_nagle(self, *args, **kwargs):
    # Small comm messages otherwise wait ~40 ms for the peer's delayed ACK (Nagle's algorithm).
    self.set_nodelay(True)
    marker = os.environ.get("CNNW_TEST_NODELAY_MARKER")
    if marker:
        pathlib.Path(marker).write_text("nodelay")
    result = _original_open(self, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


KernelWebsocketHandler.open = _open_without_nagle
'''


# ---------------------------------------------------------------------------------------------- pytest hooks
def pytest_collection_modifyitems(config, items):
    if CHROMIUM is not None:
        return
    skip = pytest.mark.skip(reason="chromium is not installed (apt-get install -y chromium); browser tests need it")
    here = Path(__file__).parent
    for item in items:
        if "browser" in item.keywords or here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:150]


def _pages_of(item) -> list["NotebookPage"]:
    pages = [value for value in getattr(item, "funcargs", {}).values() if isinstance(value, NotebookPage)]
    pages += [page for page in getattr(item, "_cnnw_pages", []) if page not in pages]
    return pages


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Screenshot every NotebookPage a test used, passed or failed, while its fixtures are still up."""
    report = yield
    if report.when == "call" or (report.when == "setup" and report.failed):
        outcome = "passed" if report.passed else ("skipped" if report.skipped else "failed")
        for page in _pages_of(item):
            if page.page.is_closed():
                continue
            stem = f"{_safe_name(item.name)}-{outcome}"
            for stale in ARTIFACTS.glob(f"{_safe_name(item.name)}-*-{page.server.kind}*.png"):
                stale.unlink(missing_ok=True)  # an older run's pass/fail picture of this test
            try:
                saved = page.screenshot(stem, selector=page.screenshot_selector)
                report.sections.append(("screenshots", "\n".join(str(p) for p in saved)))
            except Exception as exc:  # a screenshot must never hide the test's own result
                print(f"screenshot {stem} failed: {exc}", file=sys.stderr)
    return report


# ---------------------------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterServer:
    """One throw-away ``jupyter lab`` or ``jupyter notebook`` server (kind "lab" | "notebook")."""

    def __init__(self, kind: str):
        if kind not in ("lab", "notebook"):
            raise ValueError(f"kind must be 'lab' or 'notebook', got {kind!r}")
        self.kind = kind
        self.base = Path(tempfile.mkdtemp(prefix=f"cnnw-browser-{kind}-"))
        self.root = self.base / "root"
        self.config_dir = self.base / "config"
        self.runtime_dir = self.base / "runtime"
        self.workspaces_dir = self.base / "workspaces"
        for folder in (self.root, self.config_dir, self.runtime_dir, self.workspaces_dir):
            folder.mkdir()
        self.nodelay_marker = self.base / "nodelay-marker"
        self.log_path = self.base / "server.log"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log_file = None
        self._write_config()

    def _write_config(self) -> None:
        (self.config_dir / "jupyter_server_config.py").write_text(NODELAY_CONFIG)
        labconfig = self.config_dir / "labconfig"
        labconfig.mkdir()
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        # Render every cell (no virtual scrolling): widget outputs stay attached while we add cells.
        settings = self.config_dir / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
        settings.mkdir(parents=True)
        (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))

    def start(self) -> "JupyterServer":
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.config_dir),
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_PLATFORM_DIRS": "1",
            "CNNW_TEST_NODELAY_MARKER": str(self.nodelay_marker),
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "jupyter", self.kind,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--expose-app-in-browser",
        ]
        if self.kind == "lab":
            command += [
                f"--LabServerApp.workspaces_dir={self.workspaces_dir}",
                "--LabApp.news_url=",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter {self.kind} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.api("GET", "/api/status", timeout=2) is not None:
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"jupyter {self.kind} did not answer /api/status in {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, method: str, path: str, body=None, timeout: float = 10.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else {}

    def delete_sessions(self, path: str | None = None) -> None:
        """Delete the sessions (and so the kernels) of notebook ``path``, or of every notebook."""
        for session in self.api("GET", "/api/sessions"):
            if path is None or session.get("path") == path:
                try:
                    self.api("DELETE", f"/api/sessions/{session['id']}")
                except urllib.error.HTTPError:
                    pass  # already gone

    def notebook_url(self, path: str) -> str:
        if self.kind == "lab":
            # a unique workspace per page: JupyterLab would otherwise restore the last one
            return f"{self.url}/lab/workspaces/w{secrets.token_hex(6)}/tree/{path}?token={self.token}"
        return f"{self.url}/notebooks/{path}?token={self.token}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                self.delete_sessions()
            except Exception:
                pass
            end_process(process)
        keep_log(self._log_file, self.log_path, self.kind)
        self._log_file = None
        shutil.rmtree(self.base, ignore_errors=True)


def end_process(process: subprocess.Popen) -> None:
    """Terminate a server process, killing it if it does not stop within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def keep_log(log_file, log_path: Path, name: str) -> None:
    """Close a server's open log file (if any) and copy it to the artifacts as ``server-<name>.log``."""
    if log_file is not None:
        log_file.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, ARTIFACTS / f"server-{name}.log")


class ServerPool:
    """Starts each kind of server on first use and stops exactly those at the end of the session."""

    def __init__(self):
        self._servers: dict[str, JupyterServer] = {}

    def __call__(self, kind: str) -> JupyterServer:
        if kind not in self._servers:
            self._servers[kind] = JupyterServer(kind).start()
        return self._servers[kind]

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


#: What frees the browser tier's servers and browser (about 1 GB with their kernels) once its last
#: test is done, instead of at the end of the session, while the engine and kernel tiers run.
_RELEASE: list = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    # nextitem None: the session ends, and its own teardown has already closed them
    if nextitem is not None and Path(__file__).parent not in Path(nextitem.path).parents:
        while _RELEASE:
            _RELEASE.pop()()


@pytest.fixture(scope="session")
def jupyter_servers():
    """``jupyter_servers("lab")`` / ``jupyter_servers("notebook")``: one server per kind per session
    (stopped after the last browser test; asked for again, a kind starts anew)."""
    pool = ServerPool()
    _RELEASE.append(pool.stop_all)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session")
def lab_server(jupyter_servers) -> JupyterServer:
    return jupyter_servers("lab")


@pytest.fixture(scope="session")
def notebook_server(jupyter_servers) -> JupyterServer:
    return jupyter_servers("notebook")


# ---------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:  # pragma: no cover - collection already skips these tests
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        _RELEASE.append(chromium.close)
        try:
            yield chromium
        finally:
            chromium.close()


# ---------------------------------------------------------------------------------------------- notebooks
def write_notebook(server: JupyterServer, name: str, cells: list[str]) -> str:
    """Write a python3 notebook with these code cells into the server root; returns its path."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path = server.root / name
    nbformat.write(notebook, path)
    return name


_FIND_PANEL_JS = """
async (path) => {
  const app = window.jupyterapp;
  await app.restored;
  for (let i = 0; i < 1200; i++) {
    for (const w of app.shell.widgets('main')) {
      if (w.context && w.context.path === path) return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
"""

# Defines window.__cnnwTest (idempotent): helpers that find the notebook panel and run cells.
_HELPERS_JS = """
() => {
  if (window.__cnnwTest) return;
  const panelFor = (path) => {
    for (const w of window.jupyterapp.shell.widgets('main')) {
      if (w.context && w.context.path === path) return w;
    }
    throw new Error('no notebook panel for ' + path);
  };
  const withTimeout = (promise, ms, what) => Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(what + ' timed out after ' + ms + ' ms')), ms)),
  ]);
  const outputText = (outputs) => {
    const parts = [];
    for (const o of outputs) {
      if (o.output_type === 'stream') parts.push(Array.isArray(o.text) ? o.text.join('') : o.text);
      else if (o.output_type === 'error') {
        const tb = (o.traceback || []).join('\\n').replace(/\\u001b\\[[0-9;]*m/g, '');
        parts.push('__CNNW_ERROR__' + o.ename + ': ' + o.evalue + '\\n' + tb);
      } else if (o.data && o.data['text/plain'] && !o.data['application/vnd.jupyter.widget-view+json']) {
        const t = o.data['text/plain'];
        parts.push((Array.isArray(t) ? t.join('') : t) + '\\n');
      }
    }
    return parts.join('');
  };
  window.__cnnwTest = {
    panelFor,
    async prepare(path) {
      const panel = panelFor(path);
      window.jupyterapp.shell.activateById(panel.id);
      await panel.context.ready;
      await panel.sessionContext.ready;
      // wait for a live kernel connection
      const kernel = () => panel.sessionContext.session && panel.sessionContext.session.kernel;
      for (let i = 0; i < 1800 && !(kernel() && kernel().connectionStatus === 'connected'); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      if (!kernel() || kernel().connectionStatus !== 'connected') throw new Error('no kernel connection for ' + path);
      return kernel().id;
    },
    async runAll(path, ms) {
      const panel = panelFor(path);
      window.jupyterapp.shell.activateById(panel.id);
      await withTimeout(window.jupyterapp.commands.execute('notebook:run-all-cells'), ms, 'run-all-cells');
      // markdown cells have no outputs
      return panel.content.widgets.map((cell) => (cell.model.outputs ? outputText(cell.model.outputs.toJSON()) : ''));
    },
    async runCell(path, code, ms) {
      const panel = panelFor(path);
      window.jupyterapp.shell.activateById(panel.id);
      const notebook = panel.content;
      const model = notebook.model;
      const index = model.cells.length;
      model.sharedModel.insertCell(index, { cell_type: 'code', source: code });
      notebook.activeCellIndex = index;
      notebook.deselectAll();
      await withTimeout(window.jupyterapp.commands.execute('notebook:run-cell'), ms, 'run-cell');
      return outputText(notebook.widgets[index].model.outputs.toJSON());
    },
  };
}
"""


class CellError(AssertionError):
    """A cell run by the test raised in the kernel."""


class NotebookPage:
    """One notebook open in one browser page of one server."""

    def __init__(self, server: JupyterServer, browser, path: str, viewport=(1400, 1600)):
        self.server = server
        self.path = path
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        #: an element also saved on its own in screenshots (e.g. the widget root), if present
        self.screenshot_selector: str | None = None

    # -- lifecycle
    def open(self, timeout_s: float = 90.0) -> "NotebookPage":
        self.page.goto(self.server.notebook_url(self.path), wait_until="domcontentloaded", timeout=timeout_s * 1000)
        self.page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout_s * 1000)
        if not self.page.evaluate(_FIND_PANEL_JS, self.path):
            raise AssertionError(f"{self.path} did not open in {self.server.kind}")
        self.page.evaluate(_HELPERS_JS)
        self.page.evaluate("(path) => window.__cnnwTest.prepare(path)", self.path)
        return self

    def close(self) -> None:
        self.save_console()
        try:
            self.context.close()
        finally:
            self.server.delete_sessions(self.path)

    # -- running code
    def run_all(self, timeout_s: float = 240.0) -> list[str]:
        """Run every cell; returns each cell's text output. Raises CellError if a cell raised."""
        outputs = self.page.evaluate(
            "([path, ms]) => window.__cnnwTest.runAll(path, ms)", [self.path, int(timeout_s * 1000)]
        )
        for index, text in enumerate(outputs):
            if "__CNNW_ERROR__" in text:
                raise CellError(f"cell {index} raised:\n{text.split('__CNNW_ERROR__', 1)[1]}")
        return outputs

    def run_cell(self, code: str, timeout_s: float = 120.0) -> str:
        """Append a code cell, run it, return its text output (stdout + text/plain results)."""
        text = self.page.evaluate(
            "([path, code, ms]) => window.__cnnwTest.runCell(path, code, ms)", [self.path, code, int(timeout_s * 1000)]
        )
        if "__CNNW_ERROR__" in text:
            raise CellError(f"cell raised:\n{text.split('__CNNW_ERROR__', 1)[1]}\n--- code ---\n{code}")
        return text

    def kernel_json(self, expression: str, setup: str = "", timeout_s: float = 120.0):
        """Evaluate ``expression`` in the kernel (in a new cell) and return it, passed through JSON."""
        code = f"{setup}\nimport json as _json\nprint('__CNNW_JSON__' + _json.dumps({expression}))"
        text = self.run_cell(code.strip(), timeout_s=timeout_s)
        marker = text.rfind("__CNNW_JSON__")
        if marker < 0:
            raise AssertionError(f"no JSON in the cell output: {text!r}")
        return json.loads(text[marker + len("__CNNW_JSON__"):].splitlines()[0])

    # -- artifacts
    def screenshot(self, stem: str, selector: str | None = None) -> list[Path]:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = []
        target = ARTIFACTS / f"{stem}-{self.server.kind}.png"
        self.page.screenshot(path=str(target))
        saved.append(target)
        if selector is not None:
            element = self.page.query_selector(selector)
            if element is not None:
                element_target = ARTIFACTS / f"{stem}-{self.server.kind}-element.png"
                element.screenshot(path=str(element_target))
                saved.append(element_target)
        return saved

    def console_errors(self) -> list[str]:
        return [
            line for line in self.console
            if line.startswith(("error:", "pageerror:")) and not any(noise in line for noise in KNOWN_CONSOLE_NOISE)
        ]

    def save_console(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"console-{_safe_name(Path(self.path).stem)}-{self.server.kind}.txt").write_text(
            "\n".join(self.console) + "\n"
        )


@pytest.fixture
def open_notebook(request, jupyter_servers, browser):
    """``open_notebook(kind, name, cells)``: write, open and return a NotebookPage (closed after the test)."""
    opened: list[NotebookPage] = []
    request.node._cnnw_pages = opened

    def _open(kind: str, name: str, cells: list[str]) -> NotebookPage:
        server = jupyter_servers(kind)
        path = write_notebook(server, name, cells)
        page = NotebookPage(server, browser, path)
        opened.append(page)
        return page.open()

    yield _open
    for page in opened:
        page.close()


@pytest.fixture(scope="session")
def new_notebook_page(jupyter_servers, browser):
    """``new_notebook_page(kind, name, cells)``: write the notebook and return an unopened NotebookPage.

    For fixtures of a wider scope than one test (the caller opens and closes it).
    """

    def _new(kind: str, name: str, cells: list[str], viewport=(1400, 1600)) -> NotebookPage:
        server = jupyter_servers(kind)
        return NotebookPage(server, browser, write_notebook(server, name, cells), viewport=viewport)

    return _new


@pytest.fixture(scope="session")
def browser_artifacts() -> Path:
    """``test-artifacts/browser/`` (gitignored): screenshots, console logs, server logs, latency.txt."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

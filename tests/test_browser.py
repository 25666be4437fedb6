"""Every lesson, run in a real JupyterLab in a real (headless) browser.

A JupyterLab server is started on 127.0.0.1 with a token, over a copy of
``course/``; headless Chromium, driven by Playwright, opens each lesson, runs
all its cells through JupyterLab's own "run all" command and checks what a
learner would see: no cell ends in an error, every explorer the lesson
creates is rendered with its controls and its picture, and moving one of its
controls changes what it shows. A screenshot of each explorer is saved (to
``$MINATTN_SCREENSHOTS`` when set, else a temporary folder).

Needs Chromium (Debian's ``chromium`` package, or ``$MINATTN_CHROMIUM``);
Playwright's own browser download is not used. Without Chromium the tests are
skipped with a message on a learner's machine and fail in CI.
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
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "course").glob("[0-9][0-9]-*.ipynb"))
CHROMIUM = os.environ.get("MINATTN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
RUN_ALL_TIMEOUT_S = 900  # the slowest lesson trains a model for ~30 s; CI runs other tests beside this one
# Flags for a machine without network or display: no sandbox (root in CI), no GPU, no background fetches.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPLORER_CALL = re.compile(r"^\s*(?:_?\w+\s*=\s*)?(\w+_explorer)\(", re.MULTILINE)

# JavaScript run in the page. `jupyterapp` is JupyterLab's application object
# (exposed with --LabApp.expose_app_in_browser); `panel(path)` finds a notebook's tab.
JS_PANEL = """
(path) => {
    const app = window.jupyterapp;
    if (!app) return null;
    for (const w of app.shell.widgets('main')) {
        if (w.context && w.context.path === path) return w;
    }
    return null;
}
"""
JS_KERNEL_READY = f"""
(path) => {{
    const w = ({JS_PANEL})(path);
    const kernel = w && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!(w && w.content.model && kernel && kernel.connectionStatus === 'connected'
              && kernel.status === 'idle');
}}
"""
JS_RUN_ALL = f"""
(path) => {{
    const app = window.jupyterapp;
    const w = ({JS_PANEL})(path);
    app.shell.activateById(w.id);
    window.__minattnRunAll = {{ done: false }};
    app.commands.execute('notebook:run-all-cells').then(
        (ok) => {{ window.__minattnRunAll = {{ done: true, ok: ok }}; }},
        (error) => {{ window.__minattnRunAll = {{ done: true, ok: false, error: String(error) }}; }});
}}
"""
JS_CELLS = f"""
(path) => {{
    const w = ({JS_PANEL})(path);
    const cells = [];
    let index = 0;
    for (const cell of w.content.model.cells) {{
        if (cell.type === 'code') {{
            const outputs = cell.outputs.toJSON();
            cells.push({{
                index: index,
                executionCount: cell.executionCount,
                errors: outputs.filter((o) => o.output_type === 'error')
                               .map((o) => o.ename + ': ' + o.evalue),
            }});
        }}
        index += 1;
    }}
    return cells;
}}
"""
# What an explorer shows: its text and the address of its picture (a new data: URL per new PNG).
JS_SHOWN = """
(node) => {
    const img = node.querySelector('img');
    return JSON.stringify({ text: node.innerText, image: img ? img.src : null });
}
"""
JS_PICTURE_LOADED = "(n) => { const i = n.querySelector('img'); return !!i && i.complete && i.naturalWidth > 0; }"
JS_RENDERED = """
(node) => {
    const img = node.querySelector('img');
    const box = node.getBoundingClientRect();
    return {
        width: box.width, height: box.height,
        imageWidth: img && img.complete ? img.naturalWidth : 0,
        alt: img ? img.alt : '',
        controls: node.querySelectorAll('.noUi-handle, select, input, button').length,
    };
}
"""


@dataclass
class Lab:
    url: str
    token: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def chromium_path():
    if CHROMIUM is None:
        message = (
            "the browser tests need Chromium: install Debian/Ubuntu's `chromium` package "
            "(`apt-get install chromium`) or set MINATTN_CHROMIUM to a Chromium binary"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a copy of course/, on 127.0.0.1 with a token; stopped afterwards."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "course", root / "course", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home = root / ".jupyter"
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        PYTHONUNBUFFERED="1",
    )
    # A clean profile: no news pop-up over the page, every cell kept in the page (no windowing),
    # so that explorers far down a lesson are rendered and can be found.
    _write_json(
        home / "config" / "labconfig" / "page_config.json",
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}},
    )
    _write_json(
        home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )
    token, port = secrets.token_hex(16), _free_port()
    log = root / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI runs as root, which JupyterLab refuses by default
        command.append("--allow-root")
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Lab(url=url, token=token)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MINATTN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def expected_explorers(notebook: Path) -> list[str]:
    """The explorer functions a lesson calls, in order (one rendered widget each)."""
    nb = nbformat.read(notebook, as_version=4)
    return [name for cell in nb.cells if cell.cell_type == "code" for name in EXPLORER_CALL.findall(cell.source)]


def _wait_until(page, predicate: str, arg, failure: str, timeout_ms: int = 30_000) -> None:
    """Wait for a JavaScript predicate; on time-out, fail with a message that says what never happened."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(predicate, arg=arg, timeout=timeout_ms, polling=200)
    except PlaywrightTimeout:
        pytest.fail(failure)


def _move_one_control(explorer) -> str:
    """Change one control of an explorer as a learner would (keyboard or mouse); return what was done."""
    handle = explorer.locator(".noUi-handle").first
    if handle.count():
        # noUiSlider keeps its position in ARIA attributes: step back from the end of the range.
        at_end = handle.evaluate(
            "(h) => Number(h.getAttribute('aria-valuenow')) >= Number(h.getAttribute('aria-valuemax'))"
        )
        key = "ArrowLeft" if at_end else "ArrowRight"
        handle.focus()
        handle.press(key)
        return f"slider: {key}"
    select = explorer.locator("select").first
    if select.count():
        options = select.locator("option")
        current = select.evaluate("(s) => s.selectedIndex")
        target = 1 if current == 0 else 0
        select.select_option(index=target)
        return f"dropdown: option {target} ({options.nth(target).inner_text()!r})"
    checkbox = explorer.locator("input[type=checkbox]").first
    if checkbox.count():
        checkbox.click()
        return "checkbox: click"
    pytest.fail("the explorer has no slider, dropdown or checkbox to move")


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_in_jupyterlab(lab, browser, screenshot_dir, lesson):
    path = f"course/{lesson.name}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors: list[str] = []
    page.on("pageerror", lambda error: console_errors.append(str(error)))
    try:
        page.goto(f"{lab.url}/lab/tree/{path}?token={lab.token}")
        page.wait_for_function(JS_KERNEL_READY, arg=path, timeout=180_000, polling=500)

        page.evaluate(JS_RUN_ALL, path)
        page.wait_for_function(
            "() => window.__minattnRunAll && window.__minattnRunAll.done",
            timeout=RUN_ALL_TIMEOUT_S * 1000,
            polling=1000,
        )
        cells = page.evaluate(JS_CELLS, path)
        errors = [f"cell {c['index']}: {e}" for c in cells for e in c["errors"]]
        assert not errors, f"{lesson.name}: cells ended in errors:\n" + "\n".join(errors)
        not_run = [c["index"] for c in cells if c["executionCount"] is None]
        assert not not_run, f"{lesson.name}: run-all stopped; cells never ran: {not_run}"
        run_all = page.evaluate("() => window.__minattnRunAll")
        assert run_all.get("ok"), f"{lesson.name}: JupyterLab's run-all reported failure: {run_all}"

        notebook_node = page.locator(".jp-NotebookPanel:visible .jp-Notebook")
        broken = notebook_node.get_by_text("Error displaying widget")
        assert broken.count() == 0, f"{lesson.name}: a widget failed to display"

        expected = expected_explorers(lesson)
        explorers = notebook_node.locator(".minattn-explorer")
        assert explorers.count() == len(expected), (
            f"{lesson.name}: the lesson calls {expected}, but {explorers.count()} explorer widget(s) are in the page"
        )
        for k, name in enumerate(expected):
            explorer = explorers.nth(k)
            explorer.scroll_into_view_if_needed()
            kind = name.removesuffix("_explorer").replace("_", "-")
            assert explorer.evaluate("(n, kind) => n.classList.contains('minattn-explorer-' + kind)", kind), (
                f"{lesson.name}: explorer {k + 1} should be {name}, but it is {explorer.get_attribute('class')}"
            )
            _wait_until(page, JS_PICTURE_LOADED, explorer.element_handle(), f"{name}: its picture never loaded")
            rendered = explorer.evaluate(JS_RENDERED)
            assert rendered["width"] > 300 and rendered["height"] > 150, f"{name}: too small on screen: {rendered}"
            assert rendered["imageWidth"] > 100, f"{name}: its picture did not load: {rendered}"
            assert len(rendered["alt"]) > 80, f"{name}: its picture has no alt text in the page: {rendered}"
            assert rendered["controls"] >= 1, f"{name}: no controls rendered: {rendered}"
            before_png = explorer.screenshot(path=screenshot_dir / f"{lesson.stem}-{k + 1}-{kind}.png")
            before = explorer.evaluate(JS_SHOWN)

            action = _move_one_control(explorer)
            _wait_until(
                page,
                f"([n, before]) => ({JS_SHOWN})(n) !== before",
                [explorer.element_handle(), before],
                f"{name}: '{action}' did not change what the explorer shows within 30 s",
            )
            _wait_until(page, JS_PICTURE_LOADED, explorer.element_handle(), f"{name}: its new picture never loaded")
            after_png = explorer.screenshot()
            assert after_png != before_png, f"{name}: '{action}' changed the page's text but not the picture"
            error_box = explorer.locator("text=⚠")
            assert error_box.count() == 0, f"{name}: '{action}' showed an error: {error_box.first.inner_text()}"
        assert not console_errors, f"{lesson.name}: JavaScript errors in the page: {console_errors}"
    except BaseException:
        # What the page showed when the test failed, to see the failure rather than guess it.
        page.screenshot(path=screenshot_dir / f"FAILED-{lesson.stem}.png")
        raise
    finally:
        page.close()

"""Per-kernel modules live in real JupyterLab and headless Debian Chromium (issue 15), without a
scheduler: a JupyterLab with the package's real server extension and the environment a job with
modules sets (tests/lab/modules_lab.py: the real Lmod tree of scripts/modules.sh, the hub's modules
route in-process). Real kernels through the real launcher:

* the admin preset's kernel sees its module (``LOADEDMODULES``, the module's tool runs) while the
  server process's own environment (``/proc/<pid>/environ``) has none of it;
* the modules panel: the sticky module marked, a search, a kernel made from a module set, a
  collection saved and restored; a new notebook with that kernel sees the modules and its metadata
  records the set; editing the set restarts its kernel (said in the panel) with the new modules;
* a kernel whose module fails to load: the tool's message in a Lab notification."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from browser import run_command
from jupyterhub_hpc.modules import ModuleSystem

from .conftest import Lab
from .modules_lab import BROKEN_MESSAGE, LMOD, TMOD, ModulesHub, modules_lab
from .test_lab_contract import toast

pytestmark = [pytest.mark.browser]

# one line each (a cell of several lines written to the file was not run by Shift+Enter here)
PRESET_CELL = (
    "import os, subprocess; print('LM=' + os.environ.get('LOADEDMODULES', '')); "
    "print(subprocess.run(['hpctool', 'x'], capture_output=True, text=True).stdout)"
)
CELL = "import os; print('LM=' + os.environ.get('LOADEDMODULES', ''), 'CC=' + os.environ.get('CC', ''))"


@pytest.fixture(params=[LMOD, TMOD], ids=["lmod", "tmod"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Lab, ModulesHub]]:
    system: ModuleSystem = request.param
    # no "rename the untitled notebook?" dialog on the first save
    docmanager = (
        tmp_path / "lab-settings" / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    )
    docmanager.parent.mkdir(parents=True)
    docmanager.write_text(json.dumps({"renameUntitledFileOnSave": False}))
    server, hub = modules_lab(tmp_path, system)
    try:
        yield server, hub
    finally:
        for kernel in server.api("GET", "/api/kernels").json():
            server.api("DELETE", f"/api/kernels/{kernel['id']}")
        server.stop()
        hub.stop()


def notebook(path: Path, kernel: str, source: str) -> None:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                   "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb))


def kernel_idle(page: Page) -> None:
    """The visible notebook's kernel is up (a cell run before it is may be dropped)."""
    indicator = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
    expect(indicator).to_have_attribute("data-status", "idle", timeout=30_000)


def run_first_cell(page: Page, until: re.Pattern[str] | None = None, wait_idle: bool = True) -> None:
    """Run the visible notebook's first cell until it has run: its prompt changes to ``[n]``, or,
    with ``until``, its output matches that (a rerun's prompt may say the same ``[1]`` again). A
    run asked for just after a fresh kernel became idle was sometimes not sent at all (the prompt
    stayed ``[ ]``), and one asked for while a restart was still reaching the page stayed ``[*]``
    (lost with the old kernel): it is asked again then, at most three times, 20 s each. After a
    restart the server made (not this page), the page shows the kernel "starting" until it next
    sends it a request: ``wait_idle=False`` then."""
    if wait_idle:
        kernel_idle(page)
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    prompt = notebook.locator(".jp-CodeCell .jp-InputPrompt").first
    shown = notebook.locator(".jp-CodeCell .jp-OutputArea").first
    for _ in range(3):
        before = prompt.inner_text()
        prompt.click()
        notebook.locator('[data-command="notebook:run-cell-and-select-next"]').click()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = prompt.inner_text()
            if until is not None:
                if re.search(r"\[\d+\]", now) and until.search(shown.inner_text()):
                    return
            elif now != before and re.search(r"\[\d+\]", now):
                return  # it ran (its output is for the caller to check)
            time.sleep(0.2)
        # not run: the request was not sent, or lost in a kernel (re)start: ask again
    raise AssertionError("the cell was not run")


def output(page: Page) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").first


def saved_metadata(path: Path, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            meta = json.loads(path.read_text())["metadata"].get("jupyterhub_hpc")
        except (OSError, ValueError, KeyError):
            meta = None
        if meta:
            return dict(meta)
        time.sleep(0.2)
    raise AssertionError(f"no jupyterhub_hpc metadata in {path}")


def server_environ(lab: Lab) -> dict[str, str]:
    assert lab.proc is not None
    raw = Path(f"/proc/{lab.proc.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def shot(page: Page, locator: Any, name: str) -> None:
    """docs/img/lab-NAME.png when JUPYTERHUB_HPC_SCREENSHOTS names a directory (Lmod run only)."""
    out = os.environ.get("JUPYTERHUB_HPC_SCREENSHOTS")
    if out and "lmod" in os.environ.get("PYTEST_CURRENT_TEST", ""):
        page.wait_for_timeout(300)
        locator.screenshot(path=str(Path(out) / f"lab-{name}.png"))


def open_panel(page: Page) -> Any:
    run_command(page, "Software modules")
    panel = page.locator("#jupyterhub-hpc-modules")
    expect(panel).to_be_visible()
    return panel


def tick(panel: Any, query: str, module: str) -> None:
    panel.locator(".jp-hpc-modules-search").fill(query)
    panel.locator(f'.jp-hpc-modules-catalogue input[data-module="{module}"]').check()


def test_kernels_with_modules_in_lab(lab: tuple[Lab, ModulesHub], browser: Browser) -> None:
    server, _ = lab
    notebook(server.root / "preset.ipynb", "hpc-tool", PRESET_CELL)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        run_story(server, page)
    except Exception:
        page.screenshot(path=str(server.root.parent / "failure.png"))
        raise
    finally:
        context.close()


def run_story(server: Lab, page: Page) -> None:
    page.goto(f"{server.url}/lab?token={server.token}")

    # the admin preset: its kernel has the module, the server process not
    page.locator(".jp-DirListing-item", has_text="preset.ipynb").first.dblclick(timeout=30_000)
    run_first_cell(page)
    expect(output(page)).to_contain_text("hpctool-1.0-ran x", timeout=30_000)
    expect(output(page)).to_contain_text(re.compile(r"LM=.*hpctool/1\.0"))
    environ = server_environ(server)
    assert "hpctool" not in environ.get("LOADEDMODULES", "") and "hpctool" not in environ["PATH"]
    assert "HPC_TOOL_HOME" not in environ
    page.keyboard.press("Control+s")
    assert saved_metadata(server.root / "preset.ipynb")["modules"] == ["hpctool/1.0"]

    # the panel: sticky marked, search, a kernel from a module set, a collection
    panel = open_panel(page)
    sticky = panel.locator('.jp-hpc-modules-server li[data-module="gcc/12"]')
    expect(sticky).to_have_class(re.compile("jp-hpc-sticky"))
    expect(sticky).to_contain_text("sticky")
    panel.locator(".jp-hpc-modules-search").fill("gcc")
    expect(panel.locator(".jp-hpc-modules-catalogue li")).to_have_count(2)
    expect(panel.locator('.jp-hpc-modules-catalogue li[data-module="secret/.1.0"]')).to_have_count(0)
    tick(panel, "gcc", "gcc/11")
    tick(panel, "python", "python/3.11")
    selected = panel.locator(".jp-hpc-modules-selected")
    expect(selected).to_have_text("Selected: gcc/11, python/3.11")
    panel.locator(".jp-hpc-collection-name").fill("compilers")
    panel.locator('button[data-action="save-collection"]').click()
    expect(panel.locator('.jp-hpc-collection[data-collection="compilers"]')).to_contain_text(
        "gcc/11, python/3.11"
    )
    panel.locator(".jp-hpc-modules-name").fill("GCC 11 Py")
    panel.locator('button[data-action="create"]').click()
    row = panel.locator('.jp-hpc-kernelspec[data-kernelspec="hpc-modules-gcc-11-py"]')
    expect(row).to_contain_text("gcc/11, python/3.11")
    # restore: the collection's set comes back into the selection
    tick(panel, "gcc", "gcc/12")
    expect(selected).to_have_text("Selected: gcc/11, python/3.11, gcc/12")
    panel.locator('.jp-hpc-collection[data-collection="compilers"] button[data-action="restore"]').click()
    expect(selected).to_have_text("Selected: gcc/11, python/3.11")

    shot(page, panel, "modules")

    # a new notebook with it sees the modules, its metadata records the set
    row.locator('button[data-action="new-notebook"]').click()
    kernel_idle(page)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.type(CELL)
    run_first_cell(page)
    out = output(page)
    expect(out).to_contain_text(
        re.compile(r"LM=.*gcc/11.*python/3\.11|LM=.*python/3\.11.*gcc/11"), timeout=30_000
    )
    expect(out).to_contain_text("CC=gcc-11")
    page.keyboard.press("Control+s")
    meta = saved_metadata(server.root / "Untitled.ipynb")
    assert meta["modules"] == ["gcc/11", "python/3.11"] and meta["kernelspec"] == "hpc-modules-gcc-11-py"

    # edit: the panel says plainly that applying restarts the kernel; the kernel has the new set
    panel = open_panel(page)
    expect(panel.locator(".jp-hpc-running-kernel", has_text="GCC 11 Py")).to_contain_text(
        "gcc/11, python/3.11"
    )
    panel.locator(
        '.jp-hpc-kernelspec[data-kernelspec="hpc-modules-gcc-11-py"] button[data-action="edit"]'
    ).click()
    expect(panel.locator(".jp-hpc-modules-warning")).to_contain_text("restarts every running kernel")
    tick(panel, "hpctool", "hpctool/1.0")
    panel.locator('button[data-action="apply"]').click()
    expect(panel.locator(".jp-hpc-modules-message")).to_contain_text("restarted 1 running kernel")
    # the restarted kernel's launcher has run (the panel polls its status file) and the notebook's
    # connection has seen the restart through (a run asked for during it is lost, as in any restart)
    expect(panel.locator(".jp-hpc-running-kernel", has_text="GCC 11 Py")).to_contain_text(
        "hpctool/1.0", timeout=30_000
    )
    page.locator(".lm-TabBar-tab", has_text="Untitled.ipynb").click()
    run_first_cell(page, until=re.compile(r"LM=.*hpctool/1\.0"), wait_idle=False)
    expect(output(page)).to_contain_text(re.compile(r"LM=.*hpctool/1\.0"), timeout=30_000)

    # a module that fails to load: the tool's message in a notification (and in full in Details)
    r = server.api(
        "POST", "/jupyterhub-hpc/modules/kernels", json={"display_name": "Broken", "modules": ["broken/1.0"]}
    )
    assert r.status_code == 201, r.text
    panel = open_panel(page)
    panel.locator(
        '.jp-hpc-kernelspec[data-kernelspec="hpc-modules-broken"] button[data-action="new-notebook"]'
    ).click()
    failed = toast(page, "The kernel's modules did not load")
    expect(failed).to_be_visible(timeout=40_000)
    expect(failed).to_contain_text("licence server is down")
    failed.locator(".jp-toast-button", has_text="Details").click()
    expect(page.locator(".jp-hpc-module-failure")).to_contain_text(BROKEN_MESSAGE)

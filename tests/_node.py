"""
Node.js projects the tests drive (the interop client, the browser driver):
finding node and npm, and installing a project's dependencies once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

NPM_TIMEOUT = 180
BROWSER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser")
REPO_SCRIPTS_TEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "test")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""
The names of Chromium on C{PATH} that C{scripts/test} accepts, in its order.
"""


def node_tools(purpose: str) -> tuple[str, str]:
    """
    The C{node} and C{npm} executables.

    @param purpose: what needs them, for the error message.
    @raise RuntimeError: one is not on C{PATH}.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        raise RuntimeError(
            f"{missing} not found on PATH: {purpose} needs Node.js (20 or later) and npm; "
            "install them as the project's test set-up (scripts/test) does"
        )
    return node, npm


def _installed(project: str) -> bool:
    with open(os.path.join(project, "package.json"), encoding="utf-8") as f:
        dependencies = json.load(f)["dependencies"]
    return all(os.path.exists(os.path.join(project, "node_modules", name, "package.json")) for name in dependencies)


def install(project: str, npm: str, env: dict[str, str] | None = None) -> None:
    """
    Install a project's dependencies with C{npm ci} (C{npm install} without a
    lock file) unless its C{node_modules} has them; the lock held on
    C{package.json} keeps parallel trial workers from installing at once.

    @raise RuntimeError: npm failed or took longer than L{NPM_TIMEOUT} seconds.
    """
    with open(os.path.join(project, "package.json"), "rb") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(project):
            return
        has_lock = os.path.exists(os.path.join(project, "package-lock.json"))
        command = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
        try:
            result = subprocess.run(
                command, cwd=project, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(command)} in {project} took longer than {NPM_TIMEOUT} s") from None
        if result.returncode != 0 or not _installed(project):
            raise RuntimeError(
                f"{' '.join(command)} in {project} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )


def chromium(environ: dict[str, str]) -> str | None:
    """
    The Chromium the browser drivers launch: C{$CHROMIUM} when set, else the
    first of L{CHROMIUM_NAMES} on C{PATH}; C{None} when there is none.
    """
    if environ.get("CHROMIUM"):
        return environ["CHROMIUM"] if os.access(environ["CHROMIUM"], os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name, path=environ.get("PATH"))
        if found is not None:
            return found
    return None


def browser_node(purpose: str) -> str:
    """
    The C{node} that runs the browser drivers of C{tests/browser}, once
    Chromium is found (L{chromium}; the drivers, started with this process's
    environment, get it as C{$CHROMIUM}) and the drivers' packages are
    installed (without a browser download of their own).

    @param purpose: what needs them, for the error message.
    @raise RuntimeError: node, npm or Chromium is missing, or npm failed.
    """
    node, npm = node_tools(purpose)
    browser = chromium(dict(os.environ))
    if browser is None:
        raise RuntimeError(
            f"no Chromium found ($CHROMIUM, or {', '.join(CHROMIUM_NAMES)} on PATH): {purpose} drives Chromium; "
            "install it with `apt-get install chromium` (scripts/test does)"
        )
    os.environ["CHROMIUM"] = browser
    install(BROWSER, npm, dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1"))
    return node

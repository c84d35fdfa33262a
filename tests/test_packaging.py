"""
The wheel, installed as a user installs it, gives C{twistd gamenet} and the C{gamenet} command.

The wheel is built from a copy of the working tree and installed with pip into
a new virtual environment that has no gamenet and no way to reach the source
tree. Its dependencies are not downloaded again: the new environment sees the
packages of the environment running the tests through a directory of symbolic
links that leaves out gamenet and its twistd plugin, so whatever gamenet the
checks find is the wheel's.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gamenet.testing import free_ports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Not copied when building: the environment, VCS data and build leftovers.
# dropin.cache files are copied, so that a wheel picking them up is caught.
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "_trial_temp*", "__pycache__", ".bench"
)

# What the new environment must not see of the environment running the tests.
_GAMENET_DIST = re.compile(r"^(gamenet([-_.].*)?|__editable__.*|.*\.pth|.*\.egg-link|__pycache__)$", re.IGNORECASE)
_PLUGIN_FILES = {"gamenet_plugin.py", "dropin.cache", "__pycache__"}

_state: dict[str, Any] = {}


def _run(args: list[str], cwd: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"{args} exited with {result.returncode}:\n{result.stdout}")
    return result.stdout


def _scratch() -> str:
    if "scratch" not in _state:
        path = tempfile.mkdtemp(prefix="gamenet-packaging-")
        atexit.register(shutil.rmtree, path, True)
        _state["scratch"] = path
    return _state["scratch"]


def _can_build_offline() -> bool:
    """
    Whether this environment has the build backend pyproject.toml asks for,
    so that pip needs no isolated build environment (and no network).
    """
    try:
        setuptools = importlib.metadata.version("setuptools")
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return int(setuptools.split(".")[0]) >= 68


def wheel() -> str:
    """
    Build the wheel once per process, from a copy of the working tree.
    """
    if "wheel" not in _state:
        scratch = _scratch()
        source = os.path.join(scratch, "source")
        shutil.copytree(REPO, source, ignore=_NOT_COPIED, symlinks=True)
        out = os.path.join(scratch, "wheels")
        isolation = ["--no-build-isolation"] if _can_build_offline() else []
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", *isolation,
             "-w", out, source],
            cwd=scratch,
        )
        [name] = os.listdir(out)
        _state["wheel"] = os.path.join(out, name)
    return _state["wheel"]


def _site_directories() -> list[str]:
    """
    Where this environment's packages are installed.
    """
    found = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    found += site.getsitepackages()
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    result = []
    for path in found:
        path = os.path.realpath(path)
        if os.path.isdir(path) and path not in result and path != os.path.realpath(REPO):
            result.append(path)
    return result


def _link_dependencies(into: str) -> None:
    """
    Link every installed package of this environment into C{into}, except
    gamenet and the twistd plugin that came with it.
    """
    os.makedirs(os.path.join(into, "twisted", "plugins"))
    for directory in _site_directories():
        for name in os.listdir(directory):
            source = os.path.join(directory, name)
            if _GAMENET_DIST.match(name):
                continue
            if name == "twisted" and os.path.isdir(source):
                for child in os.listdir(source):
                    if child in ("plugins", "__pycache__"):
                        continue
                    _link(os.path.join(source, child), os.path.join(into, "twisted", child))
                plugins = os.path.join(source, "plugins")
                for child in os.listdir(plugins) if os.path.isdir(plugins) else ():
                    if child not in _PLUGIN_FILES:
                        _link(os.path.join(plugins, child), os.path.join(into, "twisted", "plugins", child))
                continue
            _link(source, os.path.join(into, name))


def _link(source: str, target: str) -> None:
    if not os.path.lexists(target):
        os.symlink(source, target)


def _clean_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def environment() -> tuple[str, str]:
    """
    A new virtual environment with the wheel installed by pip; made once per
    process. Returns its python and its site-packages directory.
    """
    if "python" not in _state:
        scratch = _scratch()
        venv = os.path.join(scratch, "venv")
        _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=scratch)
        python = os.path.join(venv, "bin", "python")
        purelib = _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=scratch, env=_clean_environ(),
        ).strip()
        deps = os.path.join(scratch, "dependencies")
        _link_dependencies(deps)
        with open(os.path.join(purelib, "test-dependencies.pth"), "w") as f:
            f.write(deps + "\n")
        _run(
            [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
             "--disable-pip-version-check", wheel()],
            cwd=scratch, env=_clean_environ(),
        )
        _state["python"] = python
        _state["purelib"] = purelib
    return _state["python"], _state["purelib"]


_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def twistd(*args: str) -> str:
    """
    Run C{twistd ARGS} with the new environment's Python, from a directory
    outside the repository; its output.
    """
    python, _ = environment()
    cwd = os.path.join(_scratch(), "elsewhere")
    os.makedirs(cwd, exist_ok=True)
    return _run([python, "-c", _TWISTD, *args], cwd=cwd, env=_clean_environ(), timeout=60)


class WheelTests(SynchronousTestCase):
    """
    What the wheel holds.
    """

    def test_files(self) -> None:
        """
        The wheel has gamenet, the master's dashboard page and the twistd
        plugin module, and nothing that would shadow Twisted's own
        C{twisted} or C{twisted.plugins} packages.
        """
        with zipfile.ZipFile(wheel()) as archive:
            names = archive.namelist()
        self.assertIn("twisted/plugins/gamenet_plugin.py", names)
        self.assertIn("gamenet/__init__.py", names)
        self.assertIn("gamenet/tap.py", names)
        for page in ("index.html", "dashboard.js", "dashboard.css"):
            self.assertIn(f"gamenet/admin/dashboard/{page}", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual([name for name in names if name.endswith("dropin.cache")], [])
        self.assertEqual([name for name in names if name.endswith((".pyc", ".pyo"))], [])
        top = {name.split("/")[0] for name in names}
        self.assertEqual({t for t in top if not t.endswith(".dist-info")}, {"gamenet", "twisted"})


class InstalledWheelTests(SynchronousTestCase):
    """
    A new environment where pip installed the wheel runs C{twistd gamenet}.
    """

    def test_fromTheWheel(self) -> None:
        """
        The new environment imports gamenet and its plugin module from where
        pip installed the wheel, not from the source tree.
        """
        python, purelib = environment()
        out = _run(
            [python, "-c",
             "import json, sys, gamenet, gamenet.tap, twisted.plugins.gamenet_plugin as p;"
             "print(json.dumps([gamenet.__file__, gamenet.tap.__file__, p.__file__, sys.path]))"],
            cwd=_scratch(), env=_clean_environ(),
        )
        package, tap, plugin, path = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(os.path.dirname(package), os.path.join(purelib, "gamenet"))
        self.assertEqual(os.path.dirname(tap), os.path.join(purelib, "gamenet"))
        self.assertEqual(plugin, os.path.join(purelib, "twisted", "plugins", "gamenet_plugin.py"))
        repo = os.path.realpath(REPO)
        self.assertEqual([p for p in path if p and os.path.realpath(p).startswith(repo)], [])

    def test_twistdLists(self) -> None:
        """
        C{twistd --help} lists the gamenet subcommand.
        """
        self.assertRegex(twistd("--help"), r"(?m)^\s+gamenet\s+Run a gamenet cluster")

    def test_gamenetHelp(self) -> None:
        """
        C{twistd gamenet --help} documents its options.
        """
        out = twistd("gamenet", "--help")
        for option in ("--config=", "--server=", "--env="):
            self.assertIn(option, out)

    def test_gamenetCommand(self) -> None:
        """
        pip installed the C{gamenet} console script beside the new
        environment's Python, run by that Python (so it imports the wheel's
        gamenet): it documents its commands, and says in one line, exit
        status 1, that it cannot reach a master that is not there.
        """
        python, _ = environment()
        script = os.path.join(os.path.dirname(python), "gamenet")
        self.assertTrue(os.access(script, os.X_OK), script)
        with open(script, encoding="utf-8") as f:
            self.assertEqual(f.readline().strip(), f"#!{python}")
        cwd = os.path.join(_scratch(), "elsewhere")
        os.makedirs(cwd, exist_ok=True)
        out = _run([script, "list", "--help"], cwd=cwd, env=_clean_environ())
        self.assertTrue(out.startswith("usage: gamenet list"), out)
        [port] = free_ports(1)
        result = subprocess.run(
            [script, "list", "--url", f"http://127.0.0.1:{port}", "--token", "t"], cwd=cwd, env=_clean_environ(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
        )
        self.assertEqual((result.returncode, result.stdout.splitlines()[0] if result.stdout else ""),
                         (1, f"gamenet: cannot reach the master at http://127.0.0.1:{port}: Connection was refused "
                             "by other side: 111: Connection refused"), result.stdout)
        self.assertNotIn("Traceback", result.stdout)

    def test_serviceMaker(self) -> None:
        """
        L{getPlugins} finds one C{IServiceMaker} named gamenet, and it provides
        the interface fully.
        """
        python, purelib = environment()
        code = """
import json
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject
makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "gamenet"]
for maker in makers:
    verifyObject(IServiceMaker, maker)
options = makers[0].options
print(json.dumps([len(makers), options.__module__, __import__("sys").modules[options.__module__].__file__]))
"""
        out = _run([python, "-c", code], cwd=_scratch(), env=_clean_environ())
        count, module, path = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(count, 1)
        self.assertEqual(module, "gamenet.tap")
        self.assertEqual(path, os.path.join(purelib, "gamenet", "tap.py"))

"""
How the browser tests find Chromium: under each name C{scripts/test}
accepts, or as C{$CHROMIUM}.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from ._node import CHROMIUM_NAMES, REPO_SCRIPTS_TEST, chromium


class ChromiumTests(SynchronousTestCase):
    """
    L{chromium} against directories of pretend executables.
    """

    def directory(self, *names: str) -> str:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        for name in names:
            with open(os.path.join(path, name), "w", encoding="utf-8") as f:
                f.write("#!/bin/sh\n")
            os.chmod(os.path.join(path, name), 0o755)
        return path

    def test_sameNamesAsScriptsTest(self) -> None:
        """
        The names are those C{scripts/test} looks for before it installs
        Chromium, in its order.
        """
        with open(REPO_SCRIPTS_TEST, encoding="utf-8") as f:
            loop = re.search(r"^for browser in (.+); do$", f.read(), re.MULTILINE)
        self.assertIsNotNone(loop)
        self.assertEqual(tuple(loop.group(1).split()), CHROMIUM_NAMES)

    def test_eachName(self) -> None:
        """
        Chromium is found under each of the names alone on C{PATH}.
        """
        for name in CHROMIUM_NAMES:
            path = self.directory(name)
            self.assertEqual(chromium({"PATH": path}), os.path.join(path, name))

    def test_order(self) -> None:
        """
        With several on C{PATH}, the first name in C{scripts/test}'s order wins.
        """
        path = self.directory("google-chrome-stable", "chromium-browser", "google-chrome")
        self.assertEqual(chromium({"PATH": path}), os.path.join(path, "chromium-browser"))

    def test_environment(self) -> None:
        """
        C{$CHROMIUM} comes first, if it can be run.
        """
        path = self.directory("chromium", "my-browser")
        mine = os.path.join(path, "my-browser")
        self.assertEqual(chromium({"PATH": path, "CHROMIUM": mine}), mine)
        self.assertIsNone(chromium({"PATH": path, "CHROMIUM": os.path.join(path, "gone")}))

    def test_none(self) -> None:
        """
        No Chromium on C{PATH} (other programs, or a file that cannot be run): none.
        """
        path = self.directory("firefox")
        with open(os.path.join(path, "chromium"), "w", encoding="utf-8") as f:
            f.write("")
        self.assertIsNone(chromium({"PATH": path}))

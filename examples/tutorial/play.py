"""
Play the tutorial's counter game against a running server.

Run from the repository root:

    .venv/bin/python -m examples.tutorial.play [NAME] [PORT]
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from gamenet.client import Client


async def main(reactor: Any, name: str = "bob", port: str = "3150") -> None:
    client = await Client.connect(reactor, "127.0.0.1", int(port), transport="websocket")
    client.on("onCount", lambda msg: print("push onCount", msg))
    print("login", await client.request("connector.counterHandler.login", {"name": name}))
    client.notify("connector.counterHandler.add", {"n": 2})
    client.notify("connector.counterHandler.add", {"n": 3})
    print("count", await client.request("connector.counterHandler.count"))
    await client.close()


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))

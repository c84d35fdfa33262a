"""
A robot scenario for tests/test_robot.py: every client joins one channel
through C{connector.counted.join}; after the warm-up, client 0 asks
C{connector.counted.shout} to push a numbered message to the channel ten
times a second, and every client records each delivery with
C{ctx.delivered}.
"""

from __future__ import annotations

from typing import Any


async def run(ctx: Any) -> None:
    client = await ctx.connect()
    await ctx.request(client, "connector.counted.join", {"uid": f"robot{ctx.index}"})
    client.on("onShout", lambda msg: ctx.delivered("onShout", str(msg["key"]), ctx.now() - msg["sent"]))
    await ctx.warmed_up()
    key = 0
    while ctx.running:
        if ctx.index == 0:
            await ctx.request(client, "connector.counted.shout", {"key": key, "sent": ctx.now()})
            key += 1
        await ctx.sleep(0.1)
    await ctx.close(client)

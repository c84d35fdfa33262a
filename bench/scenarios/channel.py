"""
The channel push scenario of bench/channel.py, for the load robot: a room of
C{members} clients over two connectors, one of them pushing to the whole room.

    gamenet bench ws://127.0.0.1:PORT1 --scenario bench/scenarios/channel.py \\
        --clients 1000 --workers 4 --warmup 5 --seconds 10 \\
        --param ports=PORT1,PORT2 --param room=room-1000 --param members=1000 \\
        --param interval=0.1

Every client connects to the connector C{ports[index % 2]} (over the
target's transport), records each C{onBench} push of the room with
C{ctx.delivered("onBench", n, now - sent)}, C{n} being the push's sequence
number and C{sent} the sender's C{ctx.now()} it carries, and asks
C{area.benchHandler.join} (bench/plugins/area.py) to bind its session to
C{ROOM/INDEX} and add it to the channel C{room}; then it holds its
connection until the deadline.

Client 0 is also the sender. After the warm-up it asks
C{area.benchHandler.members} every 50 ms until the room has all C{members}
(counting the error C{room_not_full_after_warmup} if it did not yet at the
window's start: use a longer warm-up); then every C{interval} seconds it
asks C{area.benchHandler.push} with C{{"room", "n", "sent": ctx.now()}}
(waiting for each answer, which comes before the push is delivered; one
late goes at once, without catching up), until C{settle} seconds before
the deadline (C{ctx.deadline}), so that every push sent in the window is
delivered in it.

Parameters (C{--param}): C{ports} (the two connectors' client ports,
comma-separated; default the target's), C{room} (default C{room}),
C{members} (required: the robot's C{--clients}), C{interval} (default
0.1), C{settle} (default 1).
"""

from __future__ import annotations

from typing import Any

PUSH_ROUTE = "onBench"


async def run(ctx: Any) -> None:
    params = ctx.params
    ports = [int(port) for port in params.get("ports", str(ctx.port)).split(",")]
    room = params.get("room", "room")
    members = int(params["members"])
    settle = float(params.get("settle", 1.0))
    interval = float(params.get("interval", 0.1))

    client = await ctx.connect(port=ports[ctx.index % len(ports)])

    def pushed(msg: Any) -> None:
        if isinstance(msg, dict) and msg.get("room") == room:
            ctx.delivered(PUSH_ROUTE, str(msg["n"]), ctx.now() - msg["sent"])

    client.on(PUSH_ROUTE, pushed)
    await ctx.request(client, "area.benchHandler.join", {"uid": f"{room}/{ctx.index}", "rooms": [room]})
    if ctx.index == 0:
        await ctx.warmed_up()
        full = (await ctx.request(client, "area.benchHandler.members", {"room": room}))["members"] >= members
        if not full:
            ctx.error("room_not_full_after_warmup")
        while not full and ctx.running:
            await ctx.sleep(0.05)
            full = (await ctx.request(client, "area.benchHandler.members", {"room": room}))["members"] >= members
        n = 0
        due = ctx.now()
        while ctx.running and ctx.now() < ctx.deadline - settle:
            n += 1
            await ctx.request(client, "area.benchHandler.push", {"room": room, "n": n, "sent": ctx.now()})
            due = max(due + interval, ctx.now())
            await ctx.sleep(due - ctx.now())
    await ctx.sleep(float("inf"))  # until the deadline
    await ctx.close(client)

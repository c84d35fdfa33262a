"""
The chat scenario of the load robot: each simulated client does what the
chat demo's browser client does.

    gamenet bench --port GATE_PORT --scenario examples/chat/robot.py \
        --param rooms=4 --param rate=1 --clients 100 --seconds 30

1. connect to the gate (the target) and ask C{gate.gateHandler.queryEntry}
   for a connector, then close that connection;
2. connect to the connector it names and C{connector.entryHandler.enter}
   room C{room<index % rooms>} as C{robot<index>};
3. until the deadline, send C{chat.chatHandler.send} to the whole room
   C{rate} times a second, the message being the time it was sent
   (C{ctx.now()}), so that each C{onChat} push received tells its delivery
   latency;
4. leave: close the connection (the server pushes C{onLeave} to the room).

Parameters (C{--param}): C{rooms} (default 4), C{rate} (messages per second
per client, default 1).
"""

from __future__ import annotations

from typing import Any


async def run(ctx: Any) -> None:
    rooms = int(ctx.params.get("rooms", 4))
    rate = float(ctx.params.get("rate", 1))
    name, rid = f"robot{ctx.index}", f"room{ctx.index % rooms}"

    gate = await ctx.connect()
    entry = await ctx.request(gate, "gate.gateHandler.queryEntry", {"uid": name})
    await ctx.close(gate)
    if entry.get("code") != 200:
        ctx.error("no_connector")
        return

    connector = await ctx.connect(entry["host"] or ctx.host, entry["port"])

    def on_chat(msg: Any) -> None:
        try:
            sent = float(msg["msg"])
        except (KeyError, TypeError, ValueError):
            return  # not one of the robot's messages
        ctx.push_latency("onChat", ctx.now() - sent)

    connector.on("onChat", on_chat)
    answer = await ctx.request(connector, "connector.entryHandler.enter", {"username": name, "rid": rid})
    if answer.get("error"):
        ctx.error("enter_refused")
        await ctx.close(connector)
        return

    while ctx.running:
        started = ctx.now()
        await ctx.request(connector, "chat.chatHandler.send",
                          {"rid": rid, "content": repr(ctx.now()), "from": name, "target": "*"})
        await ctx.sleep(1 / rate - (ctx.now() - started))
    await ctx.close(connector)

"""
Handlers for the cluster benchmarks (bench/forward.py, bench/channel.py,
bench/reuseport.py), loaded beside the chat example's plugins (which give
the connectors C{connector.echoHandler.echo}):

- C{area.echoHandler.echo} (L{area}): the body back, from a backend, the
  same function as the connector's echo route;
- C{area.benchHandler.*} (L{area}): readiness, joining channels, a
  channel's member count, and a push to a whole channel that carries the
  sender's send time;
- C{connector.benchStats.get} and C{connector.benchStats.pushes} (L{stats}):
  the connector's node-link batch counters and its timed channel pushes,
  which this package keeps on every connector;
- C{connector.workHandler.work} (L{work}): the body back after a given
  number of steps of CPU work, for bench/reuseport.py.
"""

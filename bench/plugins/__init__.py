"""
Handlers for the cluster benchmarks (bench/forward.py, bench/channel.py),
loaded beside the chat example's plugins (which give the connectors
C{connector.echoHandler.echo}):

- C{area.echoHandler.echo} (L{area}): the body back, from a backend, the
  same function as the connector's echo route;
- C{area.benchHandler.*} (L{area}): readiness, joining channels, and a push
  to a whole channel that carries the backend's send time;
- C{connector.benchStats.get} (L{stats}): the connector's node-link batch
  counters, which this package keeps on every connector;

"""

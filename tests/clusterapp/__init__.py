"""
The small game that L{tests.test_multiprocess} runs as a real cluster of
processes: a gate, connectors and C{area} backends (see L{tests.clusterapp.plugins}).
"""

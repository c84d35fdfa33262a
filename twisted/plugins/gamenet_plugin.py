"""
The C{twistd gamenet} plugin; the real module is imported only when used.
"""

from twisted.application.service import ServiceMaker

gamenet = ServiceMaker(
    "gamenet",
    "gamenet.tap",
    "Run a gamenet cluster, or one server of it, from a cluster file.",
    "gamenet",
)

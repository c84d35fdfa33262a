"""
What the admin service asks of the master and its process monitor, and what
the admin API asks of the fleet: the narrow views its parts are built and
tested against (fakes in L{gamenet.testing} are checked against them).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from ..cluster.control import ADMIN_KICK, SESSIONS_LISTED


class ISupervisor(Interface):
    """
    What the L{Fleet} uses of the master's process monitor
    (L{gamenet.cluster.master.Supervisor}).
    """

    held = Attribute("set of names stopped on purpose: not restarted until start_process")
    no_restart = Attribute("set of names never restarted when they exit (auto_restart = false)")
    process_listeners = Attribute("callables, called (name, pid) when a child starts and (name, None) when it exits")

    def addProcess(name, args, uid=None, gid=None, env={}, cwd=None):  # noqa: B006
        """
        Supervise one more child, started at once when the monitor runs.
        """

    def removeProcess(name):
        """
        Forget a child.
        """

    def pid(name):
        """
        @return: the process id of a running child, or C{None}.
        """

    def restart_pending(name):
        """
        @return: whether an exited child is to be restarted after its delay.
        """

    def hold(name):
        """
        Restart C{name} no more when it exits, and cancel a pending restart.
        """

    def start_process(name):
        """
        Start a child now, held or waiting for its restart delay.
        """

    def stop_processes(names):
        """
        C{SIGTERM} the running children of C{names} (they drain).

        @return: a Deferred firing once they have exited.
        """

    def kill_process(name):
        """
        C{SIGKILL} a running child.
        """


class IMaster(Interface):
    """
    What the L{Fleet} uses of the master (L{gamenet.cluster.master.MasterService}).
    """

    cluster = Attribute("the ClusterConfig, replaced when servers are added or removed at run time")
    local = Attribute("list of the ServerConfigs this master supervises")
    env = Attribute("the environment name given to children, or None")
    up = Attribute("dict of the servers logged in to the master, id to avatar")
    member_listeners = Attribute("callables, called (server_id, logged_in) on a login and a logout")
    supervisor = Attribute("the ISupervisor")

    def control(server_id, name, **kwargs):
        """
        A control call on a logged-in server.

        @return: a Deferred firing with its result; failing with
            L{GamenetError} (404 when the server is not logged in).
        """


class IFleet(Interface):
    """
    What the admin API (L{gamenet.admin._api}) asks of the fleet. Each call
    raises, or fails with, L{GamenetError} whose C{code} is the HTTP status
    to answer; the records are described in C{doc/operations.md}.
    """

    def cluster():
        """
        @return: C{{"name", "master": {"pid", "uptime"}, "servers", "up"}}.
        """

    def servers(server_type=None):
        """
        @return: the record of every server (of one type).
        """

    def server(server_id):
        """
        @return: one server's record, with C{"routes"}.
        """

    def history(seconds):
        """
        @return: C{{"interval", "servers": {id: [sample, ...]}}}.
        """

    def stop(servers=None, type=None, all=False):
        """
        @return: the ids of the servers stopped.
        """

    def kill(servers=None, type=None, all=False):
        """
        @return: the ids of the servers killed.
        """

    def restart(servers=None, type=None, all=False):
        """
        @return: the ids of the servers restarted.
        """

    def add(section=None, spec=None):
        """
        @return: the added server's record.
        """

    def remove(server_id):
        """
        Remove a server.
        """

    def sessions(server_id, uid=None, limit=SESSIONS_LISTED):
        """
        @return: an awaitable of C{{"server", "total", "sessions": [...]}}:
            one frontend's sessions, the first C{limit} by id.
        """

    def kick(uid=None, server=None, session=None, reason=ADMIN_KICK):
        """
        @return: an awaitable of the number of sessions kicked.
        """

    def blocked():
        """
        @return: an awaitable of the block list.
        """

    def block(networks):
        """
        @return: an awaitable of the whole block list.
        """

    def unblock(networks):
        """
        @return: an awaitable of the whole block list.
        """

    def broadcast(route, msg):
        """
        @return: an awaitable of the number of sessions reached.
        """

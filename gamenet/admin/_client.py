"""
A client of the master's admin API (L{gamenet.admin}) over treq: where the
master is (L{locate}), and one call with its failures turned into sentences
(L{Api.call}). The C{gamenet} command line (L{gamenet.admin.cli}) is built on it.

Tested in C{tests.test_cli}.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import quote

import attrs
from OpenSSL import crypto
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.ssl import Certificate
from twisted.web.client import (
    Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, RequestTransmissionFailed, ResponseFailed,
    ResponseNeverReceived,
)

from ..config import ADMIN_TOKEN_ENVIRONMENT, SECRET_ENVIRONMENT, ConfigError, load

REQUEST_TIMEOUT = 10.0

_UNREACHABLE = (ConnectError, ConnectingCancelledError, DNSLookupError, ResponseNeverReceived, ResponseFailed,
                RequestTransmissionFailed, CancelledError)


class Failed(Exception):
    """
    A call that did not succeed; C{str()} is the sentence printed after C{gamenet: }.
    """


@attrs.frozen
class Master:
    """
    Where the admin API is and how to call it.

    @ivar trust: a PEM certificate to trust for HTTPS (the master's own
        C{admin_tls_cert}); empty for the system's trust store.
    """

    url: str
    token: str
    trust: str = ""


def locate(config: str, url: str | None, token: str | None, environ: Mapping[str, str]) -> Master:
    """
    The master to call: C{url} and C{token} when given (the token also from
    C{$GAMENET_ADMIN_TOKEN}), what the cluster file C{config} says otherwise.

    @raise Failed: the file is needed and cannot be used, or names no admin API.
    """
    token = token or environ.get(ADMIN_TOKEN_ENVIRONMENT, "")
    if url and token:
        return Master(url.rstrip("/"), token)
    # The command line needs no cluster secret: the servers' environment may hold it, the operator's not.
    try:
        cluster = load(config, {**environ, SECRET_ENVIRONMENT: environ.get(SECRET_ENVIRONMENT) or "unused"})
    except ConfigError as e:
        if url:
            raise Failed(f"no admin token: give --token, set ${ADMIN_TOKEN_ENVIRONMENT}, or --config a cluster file "
                         f"with admin_token ({'; '.join(e.problems)})") from None
        raise Failed("; ".join(e.problems)) from None
    if url:
        return Master(url.rstrip("/"), cluster.admin_token)
    if not cluster.admin_port:
        raise Failed(f"{config} [cluster] admin_port: not set, so the master serves no admin API (or give --url)")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(cluster.admin_host, cluster.admin_host)
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if cluster.admin_tls_cert else "http"
    return Master(f"{scheme}://{host}:{cluster.admin_port}", token or cluster.admin_token, cluster.admin_tls_cert)


def http_client(reactor: Any, trust: str) -> HTTPClient:
    """
    A treq client opening a new connection for each call (nothing is left
    open between calls), trusting the certificate in file C{trust} if given.

    @raise Failed: C{trust} cannot be read as a PEM certificate.
    """
    policy = BrowserLikePolicyForHTTPS()
    if trust:
        try:
            with open(trust, "rb") as f:
                policy = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(f.read()))
        except OSError as e:
            raise Failed(f"cannot read the admin API's certificate {trust}: {e.strerror}") from None
        except crypto.Error:
            raise Failed(f"the admin API's certificate {trust} is not a PEM certificate") from None
    return HTTPClient(Agent(reactor, contextFactory=policy, pool=HTTPConnectionPool(reactor, persistent=False)))


class Api:
    """
    The admin API of one master, called through C{http} (treq's interface).
    """

    def __init__(self, http: Any, master: Master, clock: Any) -> None:
        self.http = http
        self.master = master
        self.clock = clock

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """
        The decoded JSON answer to C{method path} with JSON C{body}.

        @raise Failed: no answer within L{REQUEST_TIMEOUT}, a 401, another
            error status (with the API's C{error} sentence), or an answer that
            is not JSON.
        """
        d = Deferred.fromCoroutine(self._exchange(method, path, body))
        try:
            code, content = await d.addTimeout(REQUEST_TIMEOUT, self.clock)
        except TimeoutError:
            raise Failed(
                f"cannot reach the master at {self.master.url}: no answer within {REQUEST_TIMEOUT:g} s") from None
        except _UNREACHABLE as e:
            raise Failed(f"cannot reach the master at {self.master.url}: {_reason(e)}") from None
        if code == 401:
            raise Failed("the master refused the admin token (401)")
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        if code >= 400:
            if isinstance(answer, dict) and isinstance(answer.get("error"), str):
                raise Failed(answer["error"])
            raise Failed(f"the master answered {code} to {method} {path}")
        if answer is None and content.strip() != b"null":
            raise Failed(f"the master's answer to {method} {path} is not JSON")
        return answer

    async def _exchange(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.master.token}", "Accept": "application/json"}
        kwargs = {} if body is None else {"json": body}
        response = await self.http.request(method, self.master.url + path, headers=headers, **kwargs)
        return response.code, await response.content()

    async def server(self, server_id: str) -> dict[str, Any]:
        """
        One server's record, with its routes.
        """
        return await self.call("GET", f"/api/servers/{quote(server_id, safe='')}")

    async def servers(self, server_type: str | None = None) -> list[dict[str, Any]]:
        """
        The records of every server, or of those of one type.
        """
        query = f"?type={quote(server_type, safe='')}" if server_type else ""
        return (await self.call("GET", f"/api/servers{query}"))["servers"]


def _reason(error: BaseException) -> str:
    """
    The first cause of a failed HTTP exchange, as a short phrase.
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        return _reason(reasons[0].value)
    if isinstance(error, CancelledError):
        return "the call was cancelled"
    return str(error).rstrip(".") or type(error).__name__

"""The HTTP layer under the official twilio client: a kept-alive connection, not requests.

twilio's ``Client`` takes any ``twilio.http.HttpClient`` (its documented custom-client hook), so
the resource classes, form encoding of the API's parameters, auth and error parsing stay
twilio's own. Only the transport below them changes: requests' session machinery (settings
merged per request, cookie jars, hooks, a dozen ``isinstance`` checks against a
runtime-checkable protocol, each ~10 µs on Python 3.11) was ~0.8 ms of the ~1.6 ms of CPU an SMS
cost the sending process; urllib3 did the same exchange for about half (``bench/HISTORY.md``,
"B4 on urllib3 and written emails"), and a direct connection parsed by httptools
(``keepalive_http``) for about a fifth of that ("SMS over a kept-alive connection"). Through a
proxy, urllib3 still carries it: proxies are rare, and its CONNECT tunnelling is proven.

Behaviour kept from requests: proxies and the CA bundle come from the environment (read once:
a worker's environment does not change), no redirects, no retries (a POST resent after a lost
answer could text a patient twice), one keep-alive connection per client.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import urllib.request
import weakref
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import certifi
import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response

from campaigns.channels.base import DeliveryError
from campaigns.channels.keepalive_http import Connection

TWILIO_API = "https://api.twilio.com"
_JSON_TYPES = frozenset({"application/json", "application/scim+json"})
_logger = logging.getLogger("twilio.http_client")


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``: ``HTTPS_PROXY`` (or ``HTTP_PROXY``), else
    ``ALL_PROXY``, unless ``NO_PROXY`` lists the host; the same choice requests makes."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def environment_ca_bundle() -> str:
    """``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` as requests honours them, else certifi's."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    )


def _proxy_manager(proxy_url: str, options: dict[str, Any]) -> urllib3.ProxyManager:
    """Credentials in the proxy URL become ``Proxy-Authorization``, as requests sends them
    (urllib3 itself ignores them); the URL the pool keeps has none."""
    parts = urlsplit(proxy_url)
    headers = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        proxy_url = parts._replace(netloc=netloc).geturl()
    return urllib3.ProxyManager(proxy_url, proxy_headers=headers, **options)


class PooledHttpClient(HttpClient):  # type: ignore[misc]  # twilio ships no stubs
    """One keep-alive connection to Twilio (or to ``base_url`` when tests and development point
    the client at a local fake), and the last ``Retry-After`` seen by each thread, because
    ``TwilioRestException`` drops the response headers."""

    def __init__(self, base_url: str | None = None, *, timeout: float) -> None:
        super().__init__(_logger, False, timeout)
        self.base_url = base_url.rstrip("/") if base_url else None
        target = self.base_url or TWILIO_API
        self.proxy_url = environment_proxy(target)
        self.ca_certs = environment_ca_bundle()
        #: Only through a proxy; a direct connection per origin otherwise.
        self.pool: urllib3.ProxyManager | None = None
        if self.proxy_url:
            self.pool = _proxy_manager(
                self.proxy_url,
                {
                    "maxsize": 1,
                    "retries": False,
                    "timeout": urllib3.Timeout(connect=timeout, read=timeout),
                    "ca_certs": self.ca_certs,
                },
            )
        self._connections: dict[tuple[str, str, int | None], Connection] = {}
        # As urllib3's pools do: a client dropped without close() still closes its sockets.
        weakref.finalize(self, _close_all, self._connections)
        self._local = threading.local()

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self._local.retry_after = None
        url = self.rewrite(uri)
        if params:
            url += "?" + urlencode(params, doseq=True)
        sent = dict(headers or {})
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        body: bytes | None = None
        if data is not None:
            if sent.get("Content-Type") in _JSON_TYPES:
                body = json.dumps(data).encode()
            else:
                body = urlencode(data, doseq=True).encode()
                sent["Content-Type"] = "application/x-www-form-urlencoded"
        # twilio's log lines are formatted before the logger's level is checked (~11 µs a send)
        logged = self.logger.isEnabledFor(logging.INFO)
        if logged:
            self.log_request({"method": method, "url": url, "params": None, "headers": headers})
        # Redirects are never followed (twilio's own calls pass allow_redirects=False): a 3xx
        # comes back as it is, and twilio reports it as an error.
        status, answer_headers, answer = self._exchange(method.upper(), url, sent, body, timeout)
        self._local.retry_after = answer_headers.get("Retry-After")
        response = Response(status, answer.decode("utf-8"), answer_headers)
        if logged:
            self.log_response(status, response)
        return response

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[int, urllib3.HTTPHeaderDict, bytes]:
        if self.pool is not None:
            options: dict[str, Any] = {"redirect": False}
            if timeout is not None:  # else the pool's; None itself would mean "wait forever"
                options["timeout"] = urllib3.Timeout(connect=timeout, read=timeout)
            answer = self.pool.request(method, url, body=body, headers=headers, **options)
            return answer.status, answer.headers, answer.data
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        connection = self._connections.get(origin)
        if connection is None:
            connection = self._connections[origin] = Connection(
                *origin, timeout=self.timeout, ca_certs=self.ca_certs
            )
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return connection.exchange(method, target, headers, body, timeout=timeout)

    def rewrite(self, url: str) -> str:
        """Swap the api.twilio.com prefix; refuse other hosts rather than reach real Twilio."""
        if self.base_url is None:
            return url
        if url != TWILIO_API and not url.startswith(TWILIO_API + "/"):
            raise DeliveryError(
                "twilio: unexpected API host for a custom base URL", permanent=False
            )
        return self.base_url + url[len(TWILIO_API) :]

    @property
    def last_retry_after(self) -> str | None:
        value: str | None = getattr(self._local, "retry_after", None)
        return value

    def close(self) -> None:
        if self.pool is not None:
            self.pool.clear()
        _close_all(self._connections)


def _close_all(connections: dict[Any, Connection]) -> None:
    for connection in list(connections.values()):
        connection.close()
    connections.clear()

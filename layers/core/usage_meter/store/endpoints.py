"""The only code that connects to webhook endpoints: resolve, check, POST, never redirect.

Every address a host resolves to must be public (no private, loopback, link-local, metadata,
shared or reserved range), checked when an endpoint is registered and again at each delivery;
the connection then goes to the checked address itself (TLS still verifies the host name),
so a DNS answer that changes between the check and the connect cannot reach an inner
address. http.client never follows redirects: a 3xx is an answer like any other.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
LOCAL_HOST = "127.0.0.1"


class Unsafe(Exception):
    """The endpoint's host resolves nowhere or to an address we never deliver to."""


def _allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_local: bool) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_local and str(ip) == LOCAL_HOST:
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


def safe_address(host: str, port: int, *, allow_local: bool) -> str:
    """The address to connect to: every address of `host` is checked, the first is used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unsafe(f"{host} does not resolve") from exc
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not _allowed(ipaddress.ip_address(address.split("%", 1)[0]), allow_local):
            raise Unsafe(f"{host} resolves to {address}, a private, local or reserved address")
    if not addresses:
        raise Unsafe(f"{host} does not resolve")
    return addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, verifying the certificate against the URL's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT_S)
        sock.settimeout(self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, allow_local: bool) -> int:
    """POST `body`; the answer's status (redirects are not followed)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    address = safe_address(host, port, allow_local=allow_local)
    connection: http.client.HTTPConnection
    if secure:
        connection = _PinnedHTTPS(host, port, address, READ_TIMEOUT_S)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=READ_TIMEOUT_S)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST", path, body=body, headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
        )
        answer = connection.getresponse()
        answer.read(4096)
        return answer.status
    finally:
        connection.close()

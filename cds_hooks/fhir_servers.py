"""Which ``fhirServer`` a CDS client may send this service to (issue 21 item 5).

The service reads what prefetch did not send from the request's ``fhirServer`` with the request's token, so a
client (or whoever can post as one) chooses where this replica connects. Without a check, "http://127.0.0.1:5432",
"http://169.254.169.254/latest/meta-data" or an address inside the hospital network would be fetched from inside the
perimeter. Each trusted client therefore has a policy:

- ``origins``: the ``fhirServer`` origins (scheme, host, port) it may send; empty, any origin;
- ``networks``: the addresses outside the public internet (loopback, link-local, private, shared, reserved) its
  ``fhirServer`` may resolve to; none unless configured. The host is resolved and every address it resolves to
  must be public or in one of these networks.

A name that does not resolve when checked is not refused here: the FHIR client will fail to connect the same way
(a data gap). A name whose answer changes between this check and the fetch (DNS rebinding) is ruled out only by
``origins``; production configurations list them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves (host, port) to the addresses a connection could reach.
Resolver = Callable[[str, int], Awaitable[list[str]]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FhirServerRefused(ValueError):
    """The ``fhirServer`` is not one this client may send: ``reason`` says why, for the caller (an authenticated
    client) and the audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def origin(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, lower case, without the scheme's default port; ValueError
    otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"{url!r} is not a URL") from exc
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    host = parsed.raw_host.decode("ascii").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = parsed.port if parsed.port not in (None, _DEFAULT_PORTS[parsed.scheme]) else None
    return f"{parsed.scheme}://{host}" + (f":{port}" if port else "")


def is_public(address: IpAddress) -> bool:
    """An address on the public internet: not loopback, link-local, private, shared (100.64/10), reserved,
    multicast or unspecified (``is_global`` alone lets multicast through)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_loopback
                                      or address.is_link_local or address.is_unspecified)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class FhirServerPolicy:
    origins: frozenset[str] = frozenset()
    networks: tuple[IpNetwork, ...] = ()

    def allows_address(self, address: IpAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return is_public(address) or any(address.version == n.version and address in n for n in self.networks)


class FhirServerCheck:
    """Checks a request's ``fhirServer`` against its client's policy; resolutions are cached briefly (a DNS lookup
    per call would add its latency to every answer)."""

    def __init__(self, policies: dict[str, FhirServerPolicy] | None = None, *,
                 default: FhirServerPolicy | None = None, resolver: Resolver = system_resolver,
                 timeout_s: float = 2.0, cache_ttl_s: float = 60.0, cache_size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._policies = policies or {}
        self._default = default or FhirServerPolicy()
        self._resolver = resolver
        self._timeout_s = timeout_s
        self._ttl_s = cache_ttl_s
        self._size = cache_size
        self._clock = clock
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def policy(self, issuer: str | None) -> FhirServerPolicy:
        """The client's policy; the default (any public origin) for a caller that is not one (no authentication)."""
        return self._policies.get(issuer, self._default) if issuer is not None else self._default

    async def check(self, fhir_server: str, issuer: str | None) -> None:
        """Raises :class:`FhirServerRefused` unless the client ``issuer`` may send ``fhir_server``."""
        policy = self.policy(issuer)
        try:
            found = origin(fhir_server)
        except ValueError as exc:
            raise FhirServerRefused("fhirServer is not an http(s) URL with a host") from exc
        if policy.origins and found not in policy.origins:
            raise FhirServerRefused(f"fhirServer {found} is not one of the FHIR servers configured for this client")
        parsed = httpx.URL(fhir_server)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
        for text in await self._addresses(host, port):
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") aside
            except ValueError:
                continue
            if not policy.allows_address(address):
                raise FhirServerRefused(
                    f"fhirServer {found} resolves to {address}, which is not a public address (loopback, "
                    "link-local, private or reserved); configure its network in fhir_server_networks to allow it")

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        key, now = (host.lower(), port), self._clock()
        cached = self._resolved.get(key)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        try:
            async with asyncio.timeout(self._timeout_s):
                addresses = await self._resolver(host, port)
        except (OSError, TimeoutError):
            return []  # does not resolve (now): the fetch will fail the same way, a data gap
        if len(self._resolved) >= self._size:
            self._resolved.clear()
        self._resolved[key] = (now, addresses)
        return addresses


def parse_networks(values: list[str]) -> tuple[IpNetwork, ...]:
    """CIDR networks ("10.20.0.0/16", "127.0.0.1/32", "::1/128"); ValueError names the first that is not one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP network (CIDR, e.g. 10.20.0.0/16)") from exc
    return tuple(networks)

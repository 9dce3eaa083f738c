"""Where a CDS client may send this service (issue 21 item 5): a ``fhirServer`` must be one of the client's configured
origins (when it has any) and resolve only to public addresses, or to networks configured for that client; loopback,
link-local and private addresses are refused by default, before anything connects there."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_hooks.fhir_servers import FhirServerCheck, FhirServerPolicy, FhirServerRefused, origin, parse_networks
from ketamine_cds.settings import Settings, SettingsError, load_settings

from .conftest import BASE, Keys, close_app, hook_request, make_client

AUTH = {"access_token": "synthetic-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "ehr"}


class Listener:
    """A TCP port on loopback that counts the connections made to it (and answers none)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.port = int(self.socket.getsockname()[1])
        self.accepted = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


async def _call(settings: Settings, keys: Keys, fhir_server: str) -> httpx.Response:
    body = hook_request("10", prefetch={}, fhirServer=fhir_server, fhirAuthorization=AUTH)
    async with make_client(settings) as client:
        path = "/cds-services/ketamine-order-sign"
        r = await client.post(path, json=body, headers={"Authorization": f"Bearer {keys.token(BASE + path)}"})
        await close_app(client)
    return r


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1", "0x7f000001"])
async def test_a_fhir_server_on_loopback_is_refused_by_default_before_anything_connects(
        settings: Settings, keys: Keys, listener: Listener, host: str) -> None:
    settings.cds.clients[0].fhir_server_networks = []  # the default: no network outside the public internet
    r = await _call(settings, keys, f"http://{host}:{listener.port}/fhir")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    issue = r.json()["issue"][0]
    assert issue["code"] == "forbidden" and "not a public address" in issue["diagnostics"]
    assert listener.accepted == 0


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["http://169.254.169.254/latest/meta-data", "http://10.1.2.3/fhir",
                                    "http://192.168.0.10:8080/fhir", "http://[fe80::1]/fhir", "http://[fd00::5]/fhir",
                                    "http://0.0.0.0:5432/", "http://100.64.0.1/fhir", "http://224.0.0.1/fhir"])
async def test_link_local_private_shared_and_multicast_addresses_are_refused_by_default(
        settings: Settings, keys: Keys, server: str) -> None:
    settings.cds.clients[0].fhir_server_networks = []
    r = await _call(settings, keys, server)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "forbidden", r.text


@pytest.mark.anyio
async def test_a_network_configured_for_the_client_is_allowed(settings: Settings, keys: Keys,
                                                               listener: Listener) -> None:
    settings.cds.clients[0].fhir_server_networks = ["127.0.0.0/8"]
    r = await _call(settings, keys, f"http://127.0.0.1:{listener.port}/fhir")
    assert r.status_code != 400, r.text  # it was asked (and answered nothing: the required data is missing)
    assert listener.accepted >= 1


@pytest.mark.anyio
async def test_with_origins_configured_only_those_are_accepted(settings: Settings, keys: Keys,
                                                               listener: Listener) -> None:
    settings.cds.clients[0].fhir_servers = [f"http://127.0.0.1:{listener.port}"]
    refused = await _call(settings, keys, "http://127.0.0.1:9/fhir")
    assert refused.status_code == 400
    assert "is not one of the FHIR servers configured for this client" in refused.json()["issue"][0]["diagnostics"]
    accepted = await _call(settings, keys, f"http://127.0.0.1:{listener.port}/fhir")
    assert accepted.status_code != 400 and listener.accepted >= 1


# -- the check itself, with a resolver the test controls ---------------------------------------------------------
def _resolving(table: dict[str, list[str]]) -> FhirServerCheck:
    async def resolver(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror("no such name")
        return table[host]
    return FhirServerCheck(resolver=resolver)


def test_the_resolved_addresses_are_checked_every_one() -> None:
    check = _resolving({"fhir.example.org": ["93.184.216.34"], "rebind.example.org": ["93.184.216.34", "127.0.0.1"],
                        "metadata.example.org": ["169.254.169.254"]})
    asyncio.run(check.check("https://fhir.example.org/r4", None))
    for name in ("rebind.example.org", "metadata.example.org"):
        with pytest.raises(FhirServerRefused, match="not a public address"):
            asyncio.run(check.check(f"https://{name}/r4", None))
    asyncio.run(check.check("https://unknown.example.org/r4", None))  # does not resolve: the fetch fails alike


_NOT_PUBLIC = st.one_of(*(st.ip_addresses(network=n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8",
    "224.0.0.0/4", "240.0.0.0/4", "::1/128", "fe80::/10", "fc00::/7", "::ffff:127.0.0.0/104", "::ffff:10.0.0.0/104",
    "ff00::/8")))


@given(address=_NOT_PUBLIC)
def test_no_address_outside_the_public_internet_is_accepted_unless_its_network_is_configured(
        address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    literal = f"[{address}]" if address.version == 6 else str(address)
    with pytest.raises(FhirServerRefused):
        asyncio.run(FhirServerCheck().check(f"http://{literal}/fhir", None))
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    network = ipaddress.ip_network(f"{mapped or address}/{32 if (mapped or address).version == 4 else 128}")
    allowed = FhirServerCheck({"https://ehr": FhirServerPolicy(networks=(network,))})
    asyncio.run(allowed.check(f"http://{literal}/fhir", "https://ehr"))


@given(st.sampled_from(["http", "https"]), st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){1,3}\Z"),
       st.one_of(st.none(), st.integers(1, 65535)), st.sampled_from(["", "/", "/fhir/r4", "/fhir?x=1"]))
def test_an_origin_is_scheme_host_and_a_port_other_than_the_default(scheme: str, host: str, port: int | None,
                                                                    path: str) -> None:
    found = origin(f"{scheme}://{host.upper()}{f':{port}' if port else ''}{path}")
    default = {"http": 80, "https": 443}[scheme]
    assert found == f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


# -- configuration ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lines", "message"), [
    ('fhir_servers = ["https://fhir.example.org/r4"]', "fhir_servers: 'https://fhir.example.org/r4' is not an origin "
                                                     "(scheme://host[:port], no path); did you mean "
                                                     "'https://fhir.example.org'?"),
    ('fhir_servers = ["ftp://fhir.example.org"]', "fhir_servers: 'ftp://fhir.example.org' is not an origin"),
    ('fhir_server_networks = ["10.0.0.0/33"]', "fhir_server_networks: '10.0.0.0/33' is not an IP network"),
])
def test_a_clients_fhir_servers_and_networks_are_checked_at_start(tmp_path: Path, lines: str, message: str) -> None:
    (tmp_path / "k.toml").write_text(f'[[cds.clients]]\nissuer = "https://ehr"\njwks_url = "https://ehr/jwks"\n'
                                     f"{lines}\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(tmp_path / "k.toml")
    assert f"client https://ehr: {message}" in str(refused.value)


def test_parse_networks_reads_cidr() -> None:
    assert parse_networks(["10.20.0.0/16", "::1/128", "127.0.0.1"]) == (
        ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("::1/128"), ipaddress.ip_network("127.0.0.1/32"))

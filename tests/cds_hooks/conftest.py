"""A CDS client for tests: its signing keys, JWTs, hook requests built from the fixture patients, and our app
served in-process through httpx.ASGITransport."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_mapping import SEARCHES
from ketamine_cds.app import create_app
from ketamine_cds.settings import Settings, load_settings

from ..conftest import load_bundle

BASE = "http://cds.test"
ISSUER = "https://ehr.test"
TODAY = dt.date(2026, 11, 1)
ESKETAMINE = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50458-028-02",
                          "display": "Spravato 56 MG Nasal Spray Kit"}], "text": "Spravato 56 mg"}


class Keys:
    def __init__(self) -> None:
        self.ec = ECKey.generate_key("P-384", parameters={"kid": "ec-1", "use": "sig"})
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
        self.ec256 = ECKey.generate_key("P-256", parameters={"kid": "ec-256", "use": "sig"})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in (self.ec, self.rsa, self.ec256)]}

    def token(self, aud: str, *, alg: str = "ES384", kid: str | None = None, key: Any = None,
              **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()),
                   "sub": "ehr-client", **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        signing = key or {"ES384": self.ec, "ES256": self.ec256}.get(alg, self.rsa)
        header = {"alg": alg, "typ": "JWT", "kid": kid or signing.kid}
        return jwt.encode(header, payload, signing, algorithms=[alg])


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def settings(tmp_path: Path, keys: Keys) -> Settings:
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks()))
    (tmp_path / "ketamine-cds.toml").write_text(f"""
[cds]
public_base_url = "{BASE}"
cors_allow_origins = ["https://ehr-ui.test"]
feedback_db = "feedback.sqlite3"
audit_log = "audit.jsonl"
[[cds.clients]]
issuer = "{ISSUER}"
jwks_file = "jwks.json"
# The tests' FHIR servers listen on loopback, which a client's fhirServer may not resolve to unless configured.
fhir_server_networks = ["127.0.0.0/8", "::1/128"]
""")
    return load_settings(tmp_path / "ketamine-cds.toml")


def make_client(settings: Settings, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(settings, today=lambda: TODAY, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
async def cds(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(settings) as client:
        yield client
        await close_app(client)


async def close_app(client: httpx.AsyncClient) -> None:
    """httpx.ASGITransport sends no lifespan events: close what the app opened."""
    app = client._transport.app  # type: ignore[attr-defined]
    app.state.storage.close()
    await app.state.options.http.aclose()
    import logging

    for handler in list(logging.getLogger("ketamine_cds.audit").handlers):
        handler.close()


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


def prefetch_for(fixture: str) -> tuple[str, dict[str, Any]]:
    """The patient id and a complete prefetch object for one fixture patient."""
    resources = [e["resource"] for e in load_bundle(fixture)["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    prefetch: dict[str, Any] = {}
    for search in SEARCHES:  # what each template of the one search table would return for this patient
        if not search.is_search:
            prefetch[search.key] = patient
            continue
        found = by_type.get(search.resource_type.value, [])
        codes = dict(search.params).get("code")
        if codes:
            wanted = set(codes.split(","))
            found = [r for r in found if any(f"{c.get('system')}|{c.get('code')}" in wanted
                                             for c in r.get("code", {}).get("coding", []))]
        if "_include" in dict(search.params):
            found = found + by_type.get("Medication", [])
        prefetch[search.key] = searchset(found)
    return patient["id"], prefetch


def draft_order(patient_id: str, oid: str = "draft-1", concept: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": oid, "status": "draft", "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"},
            "medicationCodeableConcept": concept or ESKETAMINE, **extra}


def hook_request(fixture: str, hook: str = "order-sign", *, orders: list[dict[str, Any]] | None = None,
                 selections: list[str] | None = None, prefetch: dict[str, Any] | None = None,
                 drop: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    pid, full = prefetch_for(fixture)
    prefetch = full if prefetch is None else prefetch
    prefetch = {k: v for k, v in prefetch.items() if k not in drop}
    context: dict[str, Any] = {"userId": "Practitioner/dr-1", "patientId": pid}
    if hook != "patient-view":
        orders = orders if orders is not None else [draft_order(pid)]
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": o} for o in orders]}
        if hook == "order-select":
            context["selections"] = selections if selections is not None else [
                f"MedicationRequest/{o['id']}" for o in orders]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch, **extra}


Post = Callable[..., Any]


@pytest.fixture
def post(cds: httpx.AsyncClient, keys: Keys) -> Post:
    async def _post(service: str, body: Any, *, token: str | None = None, raw: bytes | None = None,
                    path_suffix: str = "") -> httpx.Response:
        path = f"/cds-services/{service}{path_suffix}"
        token = token if token is not None else keys.token(BASE + path)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        content = raw if raw is not None else json.dumps(body).encode()
        return await cds.post(path, content=content, headers=headers)

    return _post

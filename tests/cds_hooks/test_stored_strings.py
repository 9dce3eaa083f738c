"""Strings the shared state keeps, checked at the edge (issue 21 item 2): a NUL byte, a lone surrogate or a string
over its column's size in ``jti``, ``hookInstance`` or a feedback field is a 400 OperationOutcome (a 401 for the
JWT's ``jti``), never a database error, the same on the embedded SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from joserfc import jws

from ketamine_cds.settings import Settings
from storage import Sealer, open_storage

from .conftest import BASE, ISSUER, Keys, close_app, make_client

pytestmark = pytest.mark.anyio
DISCHARGE = "/cds-services/ketamine-session-discharge"
HOSTILE = {"NUL": "a\u0000b", "lone surrogate": "a\ud800b", "over-length": "x" * 5000}


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> AsyncIterator[
        httpx.AsyncClient]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"s_{uuid.uuid4().hex[:12]}")
        key = tmp_path / "storage.key"
        key.write_bytes(Fernet.generate_key())
        migrated = open_storage(url, Sealer(key.read_bytes()), migrate=True)
        await migrated.aclose()
        settings.storage.database_url, settings.storage.encryption_key_file = url, key
    async with make_client(settings) as c:
        yield c
        await close_app(c)


def _token(keys: Keys, aud: str, jti: str) -> str:
    """A signed JWT whose claims are escaped JSON, so that a lone surrogate survives as "\\ud800" (joserfc's own
    encoder writes UTF-8 and refuses one)."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": jti, "sub": "ehr-client"}
    return jws.serialize_compact({"alg": "ES384", "typ": "JWT", "kid": keys.ec.kid}, json.dumps(claims).encode(),
                                 keys.ec, algorithms=["ES384"])


def _post(client: httpx.AsyncClient, keys: Keys, path: str, body: Any, jti: str | None = None) -> Any:
    # json.dumps escapes a lone surrogate as \ud800 (httpx's own encoder would refuse to send it).
    token = keys.token(BASE + path) if jti is None else _token(keys, BASE + path, jti)
    return client.post(path, content=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})


def _discharge(hook_instance: str) -> dict[str, Any]:
    return {"hook": "encounter-discharge", "hookInstance": hook_instance,
            "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"}, "encounter": None,
                         "administrations": None, "encounterBloodPressures": None}}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hook_instance_the_store_cannot_keep_is_400(client: httpx.AsyncClient, keys: Keys,
                                                            value: str) -> None:
    r = await _post(client, keys, DISCHARGE, _discharge(value[:201] if len(value) > 3 else value))
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", r.text
    assert "hookInstance" in r.text


async def test_a_hook_instance_at_its_column_size_is_stored(client: httpx.AsyncClient, keys: Keys) -> None:
    assert (await _post(client, keys, DISCHARGE, _discharge("h" * 200))).status_code == 200


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_jti_the_store_cannot_keep_is_refused_401(client: httpx.AsyncClient, keys: Keys, value: str) -> None:
    r = await _post(client, keys, DISCHARGE, _discharge("ok"), jti=value)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"


def _item(**fields: Any) -> dict[str, Any]:
    return {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:31:00Z",
            "overrideReason": {"reason": {"code": "specialist-decision"}}, **fields}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("field", ["card", "outcomeTimestamp", "userComment", "reason.code", "reason.display",
                                   "acceptedSuggestions"])
async def test_a_feedback_string_the_store_cannot_keep_is_400(client: httpx.AsyncClient, keys: Keys, field: str,
                                                              value: str) -> None:
    item = _item()
    if field == "userComment":
        item["overrideReason"]["userComment"] = value
    elif field.startswith("reason."):
        item["overrideReason"]["reason"][field.split(".")[1]] = value
    elif field == "acceptedSuggestions":
        item |= {"outcome": "accepted", "acceptedSuggestions": [{"id": value}]}
    else:
        item[field] = value
    r = await _post(client, keys, DISCHARGE + "/feedback", {"feedback": [item]})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", r.text

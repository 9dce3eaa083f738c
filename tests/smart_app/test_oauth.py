"""The SMART client's building blocks, without a server: scopes, PKCE, assertions, id_token checks, context."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from pytest_httpx import HTTPXMock

from smart_app import ClientCredentials, OAuthProblem, granted_types, requested_scopes
from smart_app.launches import app_context, fhir_context
from smart_app.oauth import SmartConfiguration, pkce_pair, validate_id_token

CONFIG = SmartConfiguration("https://ehr.test/fhir", "https://ehr.test/auth", "https://ehr.test/token",
                            "https://ehr.test/jwks", frozenset({"permission-v2"}), ("S256",))


def test_granted_types_read_v1_and_v2_and_wildcards() -> None:
    assert granted_types("patient/Observation.rs patient/Condition.read launch openid") == {"Observation",
                                                                                             "Condition"}
    assert granted_types("patient/*.read") >= {"Patient", "Observation", "AllergyIntolerance"}
    assert granted_types("patient/Observation.c patient/Condition.s") == {"Condition"}  # create-only is not read
    assert granted_types("patient/Observation.rs?category=vital-signs") == {"Observation"}
    assert granted_types("system/*.read") == set()


def test_requested_scopes_follow_capabilities_and_configuration() -> None:
    v1 = SmartConfiguration(None, "a", "t", None, frozenset(), ("S256",))
    assert "patient/Condition.read" in requested_scopes(v1, ehr_launch=True, offline=False).split()
    scopes = requested_scopes(CONFIG, ehr_launch=False, offline=True).split()
    assert {"patient/Condition.rs", "launch/patient", "openid", "fhirUser", "offline_access"} <= set(scopes)


def test_pkce_pair_is_s256_of_a_long_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest and pkce_pair()[0] != verifier


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_assertion_expires_within_five_minutes_with_a_fresh_jti(alg: str) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k"}) if alg == "RS384" else \
        ECKey.generate_key("P-384", parameters={"kid": "k"})
    creds = ClientCredentials("app", private_key=key, alg=alg)
    first, second = creds.assertion("https://ehr.test/token"), creds.assertion("https://ehr.test/token")
    token = jwt.decode(first, key, algorithms=[alg])
    claims = token.claims
    assert token.header["alg"] == alg and token.header["kid"] == "k" and token.header["typ"] == "JWT"
    assert claims["iss"] == claims["sub"] == "app" and claims["aud"] == "https://ehr.test/token"
    assert 0 < claims["exp"] - time.time() <= 300
    assert claims["jti"] != jwt.decode(second, key, algorithms=[alg]).claims["jti"]


def _id_token(key: RSAKey, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": "https://ehr.test/fhir", "aud": "app", "sub": "dr", "iat": now, "exp": now + 300, "nonce": "n",
            **claims}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {k: v for k, v in body.items() if v is not None}, key)


@pytest.mark.anyio
@pytest.mark.parametrize("claims,problem", [
    ({}, None),
    ({"iss": "https://evil.test"}, "issuer"),
    ({"aud": "other-app"}, "audience"),
    ({"exp": int(time.time()) - 300}, "expiry"),
    ({"nonce": "other"}, "nonce"),
])
async def test_id_token_checks(httpx_mock: HTTPXMock, claims: dict, problem: str | None) -> None:  # type: ignore[type-arg]
    key = RSAKey.generate_key(2048, parameters={"kid": "idt"})
    httpx_mock.add_response(url="https://ehr.test/jwks", json={"keys": [key.as_dict(private=False)]})
    async with httpx.AsyncClient() as http:
        if problem is None:
            result = await validate_id_token(http, CONFIG, _id_token(key), "app", "n")
            assert result["sub"] == "dr"
        else:
            with pytest.raises(OAuthProblem, match=problem):
                await validate_id_token(http, CONFIG, _id_token(key, **claims), "app", "n")


@pytest.mark.anyio
async def test_an_id_token_signed_by_another_key_is_refused(httpx_mock: HTTPXMock) -> None:
    published = RSAKey.generate_key(2048, parameters={"kid": "idt"})
    forger = RSAKey.generate_key(2048, parameters={"kid": "idt"})
    httpx_mock.add_response(url="https://ehr.test/jwks", json={"keys": [published.as_dict(private=False)]})
    async with httpx.AsyncClient() as http:
        with pytest.raises(OAuthProblem, match="signature"):
            await validate_id_token(http, CONFIG, _id_token(forger), "app", "n")


def test_fhir_context_in_both_forms_andapp_context() -> None:
    assert fhir_context(["Encounter/1", {"reference": "Patient/2", "role": "launch"}, 7]) == [
        {"reference": "Encounter/1"}, {"reference": "Patient/2", "role": "launch"}]
    assert app_context(json.dumps({"card": "c", "policy": "default"})) == {"card": "c", "policy": "default"}
    assert app_context("not json") == {} and app_context(None) == {} and app_context("[1]") == {}

"""The CDS client's JWT: every attack and every malformed token gets 401 with no detail."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from pytest_httpx import HTTPXMock

from cds_hooks import JwksCache, JwtRejected, JwtVerifier, TrustedClient
from ketamine_cds.settings import CdsSettings, Settings

from .conftest import BASE, ISSUER, Keys, Post, hook_request

pytestmark = pytest.mark.anyio
SIGN = BASE + "/cds-services/ketamine-order-sign"


def _b64(data: dict) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def none_alg(keys: Keys) -> str:
    now = int(time.time())
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'ec-1'})}." \
           f"{_b64({'iss': ISSUER, 'aud': SIGN, 'iat': now, 'exp': now + 300, 'jti': 'x'})}."


def hmac_with_public_key(keys: Keys) -> str:
    # The classic confusion attack: sign with HS256 using the server's public key bytes as the secret.
    public = json.dumps(keys.ec.as_dict(private=False)).encode()
    now = int(time.time())
    return jwt.encode({"alg": "HS256", "kid": "ec-1"},
                      {"iss": ISSUER, "aud": SIGN, "iat": now, "exp": now + 300, "jti": "h"},
                      OctKey.import_key(public), algorithms=["HS256"])


def tampered(keys: Keys) -> str:
    header, payload, signature = keys.token(SIGN).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    return f"{header}.{_b64(claims)}.{signature}"


def forged_claims(keys: Keys, **claims: object) -> str:
    """A correctly signed token whose claims are set raw (json.dumps writes NaN for float('nan'))."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": SIGN, "iat": now, "exp": now + 300, "jti": str(time.time_ns()), **claims}
    from joserfc import jws

    header = {"alg": "ES384", "typ": "JWT", "kid": "ec-1"}
    return jws.serialize_compact(header, json.dumps(payload).encode(), keys.ec, algorithms=["ES384"])


# Each attack with the reason the audit log must give (the caller only ever sees a bare 401).
ATTACKS = {
    "none algorithm": (none_alg, "algorithm 'none' not allowed"),
    "HMAC signed with the public key": (hmac_with_public_key, "algorithm 'HS256' not allowed"),
    "wrong audience": (lambda k: k.token(BASE + "/cds-services/ketamine-order-select"), "wrong audience"),
    "audience of another server": (lambda k: k.token("https://other.test/cds-services/ketamine-order-sign"),
                                   "wrong audience"),
    "expired": (lambda k: k.token(SIGN, exp=int(time.time()) - 120), "expired"),
    "not yet valid (nbf)": (lambda k: k.token(SIGN, nbf=int(time.time()) + 600), "not yet valid"),
    "issued in the future": (lambda k: k.token(SIGN, iat=int(time.time()) + 600), "issued in the future"),
    "unknown kid": (lambda k: k.token(SIGN, kid="nobody"), "unknown kid"),
    "key not in the JWKS": (lambda k: k.token(SIGN, key=ECKey.generate_key("P-384", parameters={"kid": "ec-1"})),
                            "bad signature"),
    "unknown issuer": (lambda k: k.token(SIGN, iss="https://evil.test"), "issuer not trusted"),
    "tampered payload": (tampered, "bad signature"),
    "missing jti": (lambda k: k.token(SIGN, jti=None), "missing jti"),
    "missing exp": (lambda k: k.token(SIGN, exp=None), "missing exp"),
    "exp as a string": (lambda k: forged_claims(k, exp=str(int(time.time()) + 300)), "exp is not a number"),
    "exp NaN (would never expire)": (lambda k: forged_claims(k, exp=float("nan")), "exp is not a plausible time"),
    "exp huge": (lambda k: forged_claims(k, exp=1e300), "exp is not a plausible time"),
    "exp true": (lambda k: forged_claims(k, exp=True), "exp is not a number"),
    # JSON integers are unbounded: 10**400 once overflowed float conversion (a 500, not a 401).
    "exp 10**400": (lambda k: forged_claims(k, exp=10**400), "exp is not a plausible time"),
    "exp -10**400": (lambda k: forged_claims(k, exp=-10**400), "exp is not a plausible time"),
    "iat 10**400": (lambda k: forged_claims(k, iat=10**400), "iat is not a plausible time"),
    "iat -10**400": (lambda k: forged_claims(k, iat=-10**400), "iat is not a plausible time"),
    "nbf 10**400": (lambda k: forged_claims(k, nbf=10**400), "nbf is not a plausible time"),
    "nbf -10**400": (lambda k: forged_claims(k, nbf=-10**400), "nbf is not a plausible time"),
    "iat as a string": (lambda k: forged_claims(k, iat="yesterday"), "iat is not a number"),
    "lifetime of an hour": (lambda k: forged_claims(k, exp=int(time.time()) + 3600), "lifetime too long"),
    "jti an object": (lambda k: forged_claims(k, jti={"a": 1}), "jti is not a string"),
    "jti with a NUL": (lambda k: forged_claims(k, jti="abc\x00def"), "jti cannot be stored"),
    "jti with a lone surrogate": (lambda k: forged_claims(k, jti="abc\ud800"), "jti cannot be stored"),
    "not a JWT": (lambda k: "not-a-jwt", "not a compact JWS"),
    "empty": (lambda k: "", "not a compact JWS"),
}


def last_audit(settings: Settings) -> dict:  # type: ignore[type-arg]
    assert settings.cds.audit_log is not None
    return json.loads(settings.cds.audit_log.read_text().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_attacks_get_401_with_no_detail_and_the_audit_log_names_the_reason(
        post: Post, keys: Keys, settings: Settings, attack: str) -> None:
    make, reason = ATTACKS[attack]
    r = await post("ketamine-order-sign", hook_request("01"), token=make(keys))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
    logged = last_audit(settings)
    assert logged["event"] == "auth_rejected" and logged["reason"] == reason


async def test_a_replayed_jti_is_refused(post: Post, keys: Keys, settings: Settings) -> None:
    token = keys.token(SIGN)
    assert (await post("ketamine-order-sign", hook_request("01"), token=token)).status_code == 200
    assert (await post("ketamine-order-sign", hook_request("01"), token=token)).status_code == 401
    assert last_audit(settings)["reason"] == "jti replayed"


@pytest.mark.parametrize("alg", ["ES384", "RS384", "ES256", "RS256"])
async def test_accepted_algorithms(post: Post, keys: Keys, alg: str) -> None:
    r = await post("ketamine-order-sign", hook_request("01"), token=keys.token(SIGN, alg=alg))
    assert r.status_code == 200


async def test_epic_style_claims_nbf_sub_and_aud_array_are_accepted(post: Post, keys: Keys) -> None:
    now = int(time.time())
    token = keys.token([SIGN, "https://elsewhere.test"], nbf=now - 300, sub="epic-client")  # type: ignore[arg-type]
    assert (await post("ketamine-order-sign", hook_request("01"), token=token)).status_code == 200


async def test_feedback_needs_its_own_audience(post: Post, keys: Keys) -> None:
    card = (await post("ketamine-order-sign", hook_request("10"))).json()["cards"][0]
    body = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-01T10:00:00Z"}]}
    r = await post("ketamine-order-sign", body, path_suffix="/feedback", token=keys.token(SIGN))
    assert r.status_code == 401
    r = await post("ketamine-order-sign", body, path_suffix="/feedback")
    assert r.status_code == 200


async def test_jwks_by_url_is_cached_and_refreshed_on_unknown_kid_at_most_once_per_interval(
    httpx_mock: HTTPXMock, keys: Keys,
) -> None:
    new_key = ECKey.generate_key("P-256", parameters={"kid": "ec-new"})
    httpx_mock.add_response(url="https://ehr.test/jwks", json=keys.jwks())
    httpx_mock.add_response(url="https://ehr.test/jwks",
                            json={"keys": [*keys.jwks()["keys"], new_key.as_dict(private=False)]})
    clock = [1000.0]
    async with httpx.AsyncClient() as http:
        verifier = JwtVerifier([TrustedClient(ISSUER, jwks_url="https://ehr.test/jwks")],
                               JwksCache(http, refresh_interval_s=30, clock=lambda: clock[0]),
                               max_lifetime_s=CdsSettings().jwt_max_lifetime_s)
        await verifier.verify(f"Bearer {keys.token(SIGN)}", SIGN)
        await verifier.verify(f"Bearer {keys.token(SIGN)}", SIGN)
        assert len(httpx_mock.get_requests()) == 1  # cached
        rotated = keys.token(SIGN, alg="ES256", key=new_key)
        with pytest.raises(JwtRejected, match="unknown kid"):  # refresh is rate-limited: not yet
            await verifier.verify(f"Bearer {rotated}", SIGN)
        clock[0] += 31
        caller = await verifier.verify(f"Bearer {rotated}", SIGN)  # a rotated key, fetched on its unknown kid
        assert caller.issuer == ISSUER and len(httpx_mock.get_requests()) == 2


async def test_tenant_must_match_when_configured(keys: Keys) -> None:
    verifier = JwtVerifier([TrustedClient(ISSUER, jwks=keys.jwks(), tenant="hospital-a")],
                           max_lifetime_s=CdsSettings().jwt_max_lifetime_s)
    with pytest.raises(JwtRejected, match="tenant"):
        await verifier.verify(f"Bearer {keys.token(SIGN, tenant='hospital-b')}", SIGN)
    caller = await verifier.verify(f"Bearer {keys.token(SIGN, tenant='hospital-a')}", SIGN)
    assert caller.tenant == "hospital-a"


async def test_forwarded_headers_never_change_the_audience(post: Post, keys: Keys, cds) -> None:  # type: ignore[no-untyped-def]
    # The audience is the configured public URL: a forged Host or X-Forwarded-Host cannot make another one valid.
    path = "/cds-services/ketamine-order-sign"
    forged = keys.token("https://evil.example" + path)
    r = await cds.post(path, json=hook_request("10"), headers={
        "Authorization": f"Bearer {forged}", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
        "Host": "evil.example"})
    assert r.status_code == 401

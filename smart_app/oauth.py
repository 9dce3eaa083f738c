"""SMART App Launch 2.2, the client side: discovery, scopes, PKCE, the authorization request, token exchange for
public, symmetric and asymmetric clients, id_token validation and refresh.

The token and assertion rules are written out here rather than left to a generic OAuth client: SMART requires an
assertion that expires within 5 minutes with a fresh ``jti`` and RS384/ES384 (Authlib's client defaults are one hour
and RS256), and launch state must live in a server-side record per launch, not in state kept per browser.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_mapping import SEARCHED_TYPES

from .errors import OAuthProblem as OAuthProblem  # raised here; defined with the rest of the tree

# Every type the search table reads, and Medication (read by reference): one list with the CDS prefetch.
RESOURCE_TYPES = (*(t.value for t in SEARCHED_TYPES), "Medication")


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    issuer: str | None
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None
    capabilities: frozenset[str]
    code_challenge_methods: tuple[str, ...]

    @property
    def v2(self) -> bool:
        return "permission-v2" in self.capabilities

    @property
    def authorize_post(self) -> bool:
        return "authorize-post" in self.capabilities


async def discover(http: httpx.AsyncClient, iss: str) -> SmartConfiguration:
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        response = await http.get(url, headers={"Accept": "application/json"}, timeout=5.0)
    except httpx.HTTPError as exc:
        raise OAuthProblem("The EHR's FHIR server cannot be reached",
                           f"Could not read {url} ({exc.__class__.__name__}). Try again, or ask IT whether the "
                           "FHIR server is up.", 502) from exc
    if response.status_code != 200:
        raise OAuthProblem("The EHR's SMART configuration is unavailable",
                           f"{url} answered HTTP {response.status_code}.", 502)
    try:
        data = response.json()
        base = iss.rstrip("/") + "/"
        config = SmartConfiguration(
            issuer=data.get("issuer"),
            authorization_endpoint=urljoin(base, data["authorization_endpoint"]),
            token_endpoint=urljoin(base, data["token_endpoint"]),
            jwks_uri=urljoin(base, data["jwks_uri"]) if data.get("jwks_uri") else None,
            capabilities=frozenset(data.get("capabilities") or []),
            code_challenge_methods=tuple(data.get("code_challenge_methods_supported") or []),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise OAuthProblem("The EHR's SMART configuration is malformed",
                           f"{url} lacks authorization_endpoint or token_endpoint.", 502) from exc
    if config.code_challenge_methods and "S256" not in config.code_challenge_methods:
        raise OAuthProblem("The EHR does not support PKCE S256", "This app requires PKCE with S256.", 502)
    return config


def requested_scopes(config: SmartConfiguration, ehr_launch: bool, offline: bool) -> str:
    suffix = ".rs" if config.v2 else ".read"
    scopes = [f"patient/{t}{suffix}" for t in RESOURCE_TYPES]
    scopes += ["launch"] if ehr_launch else ["launch/patient"]
    scopes += ["openid", "fhirUser"]
    if offline:
        scopes.append("offline_access")
    return " ".join(scopes)


def granted_types(scope: str) -> set[str]:
    """The resource types a granted scope string lets us read (v1 ``.read``/``.*`` or v2 with ``r`` or ``s``)."""
    allowed: set[str] = set()
    for item in scope.split():
        head, _, perms = item.partition(".")
        context, _, rtype = head.partition("/")
        if context not in ("patient", "user") or not rtype:
            continue
        perms = perms.split("?", 1)[0]
        if perms in ("read", "*") or "r" in perms or "s" in perms:
            allowed |= set(RESOURCE_TYPES) if rtype == "*" else {rtype}
    return allowed


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def new_state() -> str:
    return secrets.token_urlsafe(32)  # 256 bits (SMART asks for at least 122)


def authorization_params(config: SmartConfiguration, *, client_id: str, redirect_uri: str, scope: str, state: str,
                         aud: str, challenge: str, launch: str | None, nonce: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state, "aud": aud, "code_challenge": challenge, "code_challenge_method": "S256",
              "nonce": nonce}
    if launch:
        params["launch"] = launch
    return params


def authorization_url(config: SmartConfiguration, params: dict[str, str]) -> str:
    sep = "&" if "?" in config.authorization_endpoint else "?"
    return f"{config.authorization_endpoint}{sep}{urlencode(params)}"


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None = None
    private_key: RSAKey | ECKey | None = None
    alg: str = "RS384"

    @property
    def kind(self) -> str:
        if self.private_key is not None:
            return "confidential-asymmetric"
        return "confidential-symmetric" if self.client_secret else "public"

    def assertion(self, token_endpoint: str) -> str:
        """A private_key_jwt client assertion: iss = sub = client_id, aud = token URL, exp 5 minutes, fresh jti."""
        assert self.private_key is not None
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_endpoint, "iat": now,
                  "exp": now + 300, "jti": secrets.token_urlsafe(24)}
        header = {"alg": self.alg, "kid": self.private_key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.private_key, algorithms=[self.alg])

    def public_jwks(self) -> dict[str, Any]:
        if self.private_key is None:
            return {"keys": []}
        key = self.private_key.as_dict(private=False)
        key.update({"alg": self.alg, "use": "sig"})
        return {"keys": [key]}


async def token_request(http: httpx.AsyncClient, config: SmartConfiguration, creds: ClientCredentials,
                        form: dict[str, str]) -> dict[str, Any]:
    data = dict(form)
    auth: httpx.BasicAuth | None = None
    if creds.kind == "confidential-asymmetric":
        data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        data["client_assertion"] = creds.assertion(config.token_endpoint)
    elif creds.kind == "confidential-symmetric":
        assert creds.client_secret is not None
        auth = httpx.BasicAuth(creds.client_id, creds.client_secret)
    else:
        data["client_id"] = creds.client_id
    try:
        headers = {"Accept": "application/json"}
        if auth is None:
            response = await http.post(config.token_endpoint, data=data, timeout=10.0, headers=headers)
        else:
            response = await http.post(config.token_endpoint, data=data, timeout=10.0, headers=headers, auth=auth)
    except httpx.HTTPError as exc:
        raise OAuthProblem("The EHR's sign-in service cannot be reached",
                           f"The token request failed ({exc.__class__.__name__}). Please relaunch the app.",
                           502) from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else "error"
        raise OAuthProblem("The EHR refused to issue an access token",
                           f"The token endpoint answered: {error}. Please relaunch the app; if it persists, ask IT "
                           "to check this app's registration.", 502)
    token = dict(body)
    stated = token.get("expires_in")
    token["expires_in"] = DEFAULT_TOKEN_LIFETIME_S if stated is None else token_lifetime_s(stated)
    if not isinstance(token["access_token"], str) or not token["access_token"] or not isinstance(
            token.get("refresh_token", ""), str | None):
        raise _malformed_token("its access_token or refresh_token is not a string")
    return token


#: The lifetime assumed when the token response states none (RFC 6749 §5.1 makes ``expires_in`` optional).
DEFAULT_TOKEN_LIFETIME_S = 300
#: The longest stated lifetime believed: a larger number is no lifetime the app can compute with (``10**400`` in JSON
#: is a valid integer, and ``float()`` of it overflows).
MAX_TOKEN_LIFETIME_S = 10**9
_DIGITS = re.compile(r"^[0-9]{1,10}$")


def token_lifetime_s(value: object) -> float:
    """``expires_in`` in seconds: a JSON number, or a string of digits (some EHRs send "3599"). Anything else (text,
    a list, a boolean, NaN, a negative or absurd number) is an answer the app cannot use: a page saying so (502),
    never a 500."""
    if isinstance(value, str) and _DIGITS.match(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_TOKEN_LIFETIME_S:
        raise _malformed_token("its expires_in is not a number of seconds")
    return float(value)


def _malformed_token(what: str) -> OAuthProblem:
    return OAuthProblem("The EHR's sign-in answer cannot be used",
                        f"The EHR issued an access token, but {what}. Please relaunch the app; if it persists, ask "
                        "IT to check the EHR's token endpoint.", 502)


async def validate_id_token(http: httpx.AsyncClient, config: SmartConfiguration, id_token: str, client_id: str,
                            nonce: str | None) -> dict[str, Any]:
    """Signature from the issuer's JWKS, then iss, aud, exp (60 s leeway) and nonce."""
    jwks_uri = config.jwks_uri
    issuer = config.issuer
    if jwks_uri is None and issuer:
        meta = (await http.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=5.0)).json()
        jwks_uri, issuer = meta.get("jwks_uri"), meta.get("issuer", issuer)
    if not jwks_uri or not issuer:
        raise OAuthProblem("The sign-in could not be verified", "The EHR publishes no issuer or JWKS.", 502)
    try:
        keys = KeySet.import_key_set((await http.get(jwks_uri, timeout=5.0)).json())
        token = jwt.decode(id_token, keys, algorithms=["RS256", "RS384", "ES384", "ES256"])
    except (httpx.HTTPError, ValueError, JoseError) as exc:
        raise OAuthProblem("The sign-in could not be verified", "The id_token signature is not valid.", 502) from exc
    claims = token.claims
    now = time.time()
    aud = claims.get("aud")
    problems = []
    if claims.get("iss") != issuer:
        problems.append("issuer")
    if not (aud == client_id or (isinstance(aud, list) and client_id in aud)):
        problems.append("audience")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] + 60 < now:
        problems.append("expiry")
    if nonce and claims.get("nonce") != nonce:
        problems.append("nonce")
    if problems:
        raise OAuthProblem("The sign-in could not be verified", f"The id_token failed: {', '.join(problems)}.", 502)
    return dict(claims)

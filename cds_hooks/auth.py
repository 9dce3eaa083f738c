"""Verifying the CDS client's JWT (CDS Hooks 2.0 "Trusting CDS Clients").

Every check of the spec's checklist, in order: the issuer is on the allowlist; the key is chosen by ``kid`` from
that issuer's JWKS (cached, refreshed on an unknown ``kid`` at most once per ``refresh_interval_s``); only ES384,
RS384, ES256 and RS256 signatures (never ``none`` or HMAC); ``aud`` is exactly the endpoint URL; ``exp``, ``iat``
and ``nbf`` hold with a 60 s leeway; the tenant matches when one is configured; and ``jti`` has never been seen.
Any failure is a :class:`JwtRejected`; the HTTP face answers 401 with no detail. The reason is for the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_mapping.outbound import http_client
from storage import storable

from .audit import LogEvent

log = logging.getLogger("ketamine_cds")
ALLOWED_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")
LEEWAY_S = 60


class JwtRefusal(StrEnum):
    """Why a CDS client's JWT is refused: the audit log's ``refusal`` and the ``jwt_refusals_total`` label."""

    NO_BEARER_TOKEN = "no bearer token"  # noqa: S105 - a refusal's name, not a secret
    NOT_COMPACT_JWS = "not a compact JWS"
    ALGORITHM_NOT_ALLOWED = "algorithm not allowed"
    NO_KID = "no kid"
    ISSUER_NOT_TRUSTED = "issuer not trusted"
    JWKS_UNAVAILABLE = "jwks unavailable"
    UNKNOWN_KID = "unknown kid"
    BAD_SIGNATURE = "bad signature"
    MISSING_ISS = "missing iss"
    MISSING_AUD = "missing aud"
    MISSING_EXP = "missing exp"
    MISSING_IAT = "missing iat"
    MISSING_JTI = "missing jti"
    ISSUER_MISMATCH = "issuer mismatch"
    WRONG_AUDIENCE = "wrong audience"
    EXP_NOT_A_NUMBER = "exp is not a number"
    IAT_NOT_A_NUMBER = "iat is not a number"
    NBF_NOT_A_NUMBER = "nbf is not a number"
    EXP_IMPLAUSIBLE = "exp is not a plausible time"
    IAT_IMPLAUSIBLE = "iat is not a plausible time"
    NBF_IMPLAUSIBLE = "nbf is not a plausible time"
    JTI_NOT_A_STRING = "jti is not a string"
    JTI_NOT_STORABLE = "jti cannot be stored"
    LIFETIME_TOO_LONG = "lifetime too long"
    EXPIRED = "expired"
    ISSUED_IN_THE_FUTURE = "issued in the future"
    NOT_YET_VALID = "not yet valid"
    TENANT_MISMATCH = "tenant mismatch"
    JTI_REPLAYED = "jti replayed"


#: The claims every token must carry, with the refusal when one is missing.
_REQUIRED_CLAIMS = {"iss": JwtRefusal.MISSING_ISS, "aud": JwtRefusal.MISSING_AUD, "exp": JwtRefusal.MISSING_EXP,
                    "iat": JwtRefusal.MISSING_IAT, "jti": JwtRefusal.MISSING_JTI}
#: The time claims (NumericDate), with the refusals when one is not a number or not a plausible time.
_TIME_CLAIMS = {"exp": (JwtRefusal.EXP_NOT_A_NUMBER, JwtRefusal.EXP_IMPLAUSIBLE),
                "iat": (JwtRefusal.IAT_NOT_A_NUMBER, JwtRefusal.IAT_IMPLAUSIBLE),
                "nbf": (JwtRefusal.NBF_NOT_A_NUMBER, JwtRefusal.NBF_IMPLAUSIBLE)}


class JwtRejected(Exception):
    """The JWT failed a check: ``refusal`` says which, ``reason`` says it for the audit log (the refusal's own words,
    or more when the check quotes what it refused); never for the caller."""

    def __init__(self, refusal: JwtRefusal, reason: str | None = None) -> None:
        super().__init__(reason or refusal.value)
        self.refusal = refusal
        self.reason = reason or refusal.value


@dataclass(frozen=True, slots=True)
class TrustedClient:
    """A CDS client whose JWTs are accepted. Its keys come from one of: ``jwks_url`` (fetched), ``jwks_file`` (read,
    and read again whenever the file changes) or ``jwks`` (given in memory)."""

    issuer: str
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    tenant: str | None = None
    jwks_file: Path | None = None


class JwksProblem(ValueError):
    """Why a client's JWKS cannot be used, as the end of "the JWKS of client X …" ("has no keys")."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def about(self, issuer: str) -> str:
        return f"the JWKS of client {issuer} {self.detail}"


def import_jwks(data: object) -> KeySet:
    """A JWKS as a key set, or a :class:`JwksProblem` an IT analyst can act on (joserfc's own errors read
    "missing_key: No keys to import")."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksProblem('is not a JWKS (a JSON object with a "keys" array)')
    if not data["keys"]:
        raise JwksProblem("has no keys")
    for number, key in enumerate(data["keys"], start=1):
        kid = key.get("kid") if isinstance(key, dict) else None
        name = f"key {number}" + (f" ({kid})" if isinstance(kid, str) else "")
        try:
            KeySet.import_key_set({"keys": [key]})
        except JoseError as exc:
            raise JwksProblem(f"holds {name}, which cannot be read ({exc.description or exc.error})") from exc
        except (ValueError, TypeError, AttributeError) as exc:
            raise JwksProblem(f"holds {name}, which cannot be read (malformed)") from exc
    return KeySet.import_key_set(data)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class VerifiedCaller:
    issuer: str
    tenant: str | None
    jti: str
    subject: str | None


class Replays(Protocol):
    """Where used ``jti``s are remembered: the shared store (any replica), or :class:`ReplayStore` in one process."""

    async def first_use(self, issuer: str, jti: str, expires_at: float) -> bool: ...


class ReplayStore:
    """Remembers each ``jti`` until its token expires (plus leeway); a second use is a replay.

    In memory, per process: for tools and tests. The service uses the shared store (``storage.Storage``).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._clock = clock
        self._lock = asyncio.Lock()

    async def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        async with self._lock:
            now = self._clock()
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            key = (issuer, jti)
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = expires_at + LEEWAY_S
            return True


@dataclass(slots=True)
class _CachedKeys:
    keys: KeySet | None = None
    fetched_at: float = 0.0
    #: Why ``keys`` is None (for the service's log: each new problem is logged once).
    problem: str | None = None
    #: The problem last written to the log (None once keys load again).
    logged: str | None = None
    #: The ``jwks_file`` version the keys were read from (modification time, size, inode).
    file_stamp: tuple[int, int, int] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwksCache:
    """Each trusted client's JWKS by ``kid``: fetched once, refreshed on an unknown ``kid`` (rate-limited); a JWKS
    file is read again whenever it changes, so a fixed or rotated file is used without a restart."""

    def __init__(self, http: httpx.AsyncClient | None = None, refresh_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._cache: dict[str, _CachedKeys] = {}

    async def key_set(self, client: TrustedClient, kid: str) -> KeySet:
        entry = self._cache.setdefault(client.issuer, _CachedKeys())
        if client.jwks is not None or client.jwks_file is not None:
            self._load_local(client, entry)
        else:
            async with entry.lock:
                stale = entry.keys is None or (
                    not _has_kid(entry.keys, kid) and self._clock() - entry.fetched_at >= self._refresh_interval_s
                )
                if stale:
                    await self._fetch(client, entry)
        if entry.keys is None:
            if entry.problem != entry.logged:
                # For the operator, once per new problem: /readyz no longer names it (an EHR's outage is not this
                # replica's, and anonymous callers must not learn the trusted issuers); check-config does too.
                log.warning(json.dumps({"event": LogEvent.JWKS_UNAVAILABLE, "problem": entry.problem}))
                entry.logged = entry.problem
            raise JwtRejected(JwtRefusal.JWKS_UNAVAILABLE)
        entry.logged = None
        return entry.keys

    def _load_local(self, client: TrustedClient, entry: _CachedKeys) -> None:
        """Keys given in memory are imported once; a file's are read again when its stamp changes (one stat per
        call, far cheaper than the signature check that follows)."""
        if client.jwks is not None:
            if entry.keys is None and entry.problem is None:
                self._import(client, entry, client.jwks)
            return
        assert client.jwks_file is not None
        try:
            stat = client.jwks_file.stat()
        except OSError as exc:
            entry.keys, entry.file_stamp = None, None
            entry.problem = (f"the JWKS of client {client.issuer} cannot be read from {client.jwks_file} "
                             f"({exc.__class__.__name__})")
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == entry.file_stamp:
            return
        entry.file_stamp = stamp
        try:
            data = json.loads(client.jwks_file.read_bytes())
        except OSError as exc:
            entry.keys, entry.file_stamp = None, None
            entry.problem = (f"the JWKS of client {client.issuer} cannot be read from {client.jwks_file} "
                             f"({exc.__class__.__name__})")
            return
        except ValueError:
            entry.keys = None
            entry.problem = f"the JWKS of client {client.issuer} in {client.jwks_file} is not JSON"
            return
        self._import(client, entry, data)

    @staticmethod
    def _import(client: TrustedClient, entry: _CachedKeys, data: object) -> None:
        try:
            entry.keys, entry.problem = import_jwks(data), None
        except JwksProblem as exc:
            entry.keys, entry.problem = None, exc.about(client.issuer)

    async def _fetch(self, client: TrustedClient, entry: _CachedKeys) -> None:
        entry.fetched_at = self._clock()
        if not client.jwks_url:
            entry.keys, entry.problem = None, f"client {client.issuer} has no JWKS configured"
            return
        http = self._http or http_client(timeout=5.0)
        try:
            response = await http.get(client.jwks_url, timeout=5.0)
            if response.status_code != 200:
                entry.keys = None
                entry.problem = (f"the JWKS of client {client.issuer} could not be fetched "
                                 f"(HTTP {response.status_code})")
                return
            self._import(client, entry, response.json())
        except httpx.HTTPError as exc:
            entry.keys = None
            entry.problem = f"the JWKS of client {client.issuer} could not be fetched ({exc.__class__.__name__})"
        except ValueError:
            entry.keys = None
            entry.problem = f"the JWKS of client {client.issuer} at {client.jwks_url} is not JSON"
        finally:
            if self._http is None:
                await http.aclose()


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import base64

    try:
        header_b64, payload_b64, _ = token.split(".")

        def part(b64: str) -> dict[str, Any]:
            value = json.loads(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
            if not isinstance(value, dict):
                raise ValueError("not an object")
            return value

        return part(header_b64), part(payload_b64)
    except ValueError as exc:
        raise JwtRejected(JwtRefusal.NOT_COMPACT_JWS) from exc


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate (RFC 7519 §2): a finite JSON number. A string, a boolean, NaN or an infinity is refused (NaN
    would never expire, and so could be replayed for ever)."""
    if name not in claims:
        return None
    value = claims[name]
    not_a_number, implausible = _TIME_CLAIMS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JwtRejected(not_a_number)
    # The bound is checked before anything converts to float: JSON integers are unbounded, and an int like 10**400
    # makes math.isfinite (and float()) raise OverflowError.
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 10**11:
        raise JwtRejected(implausible)
    return float(value)


class JwtVerifier:
    def __init__(self, clients: list[TrustedClient], jwks: JwksCache | None = None,
                 replay: Replays | None = None, clock: Callable[[], float] = time.time,
                 *, max_lifetime_s: float) -> None:
        """``max_lifetime_s``: the longest a CDS client's token may live (exp - iat), plus the leeway (the spec's
        clients mint one per call); the settings' ``cds.jwt_max_lifetime_s``."""
        self._clients = {c.issuer: c for c in clients}
        self._jwks = jwks or JwksCache()
        self._replay = replay or ReplayStore(clock)
        self._clock = clock
        self._max_lifetime_s = max_lifetime_s

    async def verify(self, authorization: str | None, audience: str) -> VerifiedCaller:
        if not authorization or not authorization.startswith("Bearer "):
            raise JwtRejected(JwtRefusal.NO_BEARER_TOKEN)
        token = authorization.removeprefix("Bearer ").strip()
        header, unverified = _unverified_parts(token)
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise JwtRejected(JwtRefusal.ALGORITHM_NOT_ALLOWED, f"algorithm {header.get('alg')!r} not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise JwtRejected(JwtRefusal.NO_KID)
        client = self._clients.get(str(unverified.get("iss")))
        if client is None:
            raise JwtRejected(JwtRefusal.ISSUER_NOT_TRUSTED)
        keys = await self._jwks.key_set(client, kid)
        if not _has_kid(keys, kid):
            raise JwtRejected(JwtRefusal.UNKNOWN_KID)
        try:
            verified = jwt.decode(token, keys, algorithms=list(ALLOWED_ALGORITHMS))
        except (JoseError, ValueError) as exc:
            raise JwtRejected(JwtRefusal.BAD_SIGNATURE) from exc
        claims = verified.claims
        self._check_claims(claims, client, audience)
        if not await self._replay.first_use(client.issuer, str(claims["jti"]), float(claims["exp"])):
            raise JwtRejected(JwtRefusal.JTI_REPLAYED)
        return VerifiedCaller(client.issuer, claims.get("tenant"), str(claims["jti"]), claims.get("sub"))

    def _check_claims(self, claims: dict[str, Any], client: TrustedClient, audience: str) -> None:
        now = self._clock()
        for name, missing in _REQUIRED_CLAIMS.items():
            if name not in claims:
                raise JwtRejected(missing)
        if claims["iss"] != client.issuer:
            raise JwtRejected(JwtRefusal.ISSUER_MISMATCH)
        aud = claims["aud"]
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise JwtRejected(JwtRefusal.WRONG_AUDIENCE)
        exp, iat = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
        nbf = _numeric_date(claims, "nbf")
        assert exp is not None and iat is not None  # both required above
        if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 256:
            raise JwtRejected(JwtRefusal.JTI_NOT_A_STRING)
        if not storable(claims["jti"]):
            # A NUL or a lone surrogate: no store can remember it, so its replay could not be detected.
            raise JwtRejected(JwtRefusal.JTI_NOT_STORABLE)
        if exp - iat > self._max_lifetime_s + LEEWAY_S:
            raise JwtRejected(JwtRefusal.LIFETIME_TOO_LONG)
        if exp + LEEWAY_S < now:
            raise JwtRejected(JwtRefusal.EXPIRED)
        if iat - LEEWAY_S > now:
            raise JwtRejected(JwtRefusal.ISSUED_IN_THE_FUTURE)
        if nbf is not None and nbf - LEEWAY_S > now:
            raise JwtRejected(JwtRefusal.NOT_YET_VALID)
        if client.tenant is not None and claims.get("tenant") != client.tenant:
            raise JwtRejected(JwtRefusal.TENANT_MISMATCH)

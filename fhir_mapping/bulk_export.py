"""A FHIR Bulk Data client: a Group (or Patient) ``$export`` to NDJSON files on disk, authorised by SMART Backend
Services.

Authorisation is ``client_credentials`` with a ``private_key_jwt`` client assertion (RS384 or ES384, chosen from the
key), written out here rather than left to Authlib's client, whose assertion lives an hour (SMART allows 5 minutes)
and signs RS256. The token endpoint comes from ``.well-known/smart-configuration``; a token about to expire during a
long export is replaced by a new one.

The export is kicked off with ``Prefer: respond-async``, its status polled as the server asks (``Retry-After`` in
seconds or as an HTTP date; ``X-Progress`` shown) within ``poll_limit_s``, and every file of the manifest streamed to
disk (never held in memory; gzip decoded). Files are written under a staging folder beside ``out_dir`` that becomes
``out_dir`` only when everything has arrived: a failed, refused, cancelled or interrupted export leaves nothing
half-written, and the server's export is cancelled (``DELETE`` on its status URL).

The bearer token is sent only to the FHIR server's own origin; a file elsewhere that requires it is refused. Nothing
here logs; :class:`BulkExportError` messages are one line and never carry a token or a resource's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from .client import _retry_after
from .facts import DataGap, GapReason, ResourceType
from .outbound import http_client
from .searches import SEARCHED_TYPES, domains_of

#: What the rules read: every type of the search table, and Medication (read by reference).
EXPORT_TYPES: tuple[str, ...] = (*(t.value for t in SEARCHED_TYPES), ResourceType.MEDICATION.value)

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]*)?")
_BEARER = re.compile(r"(?i)bearer\s+\S+")
_CHUNK = 1 << 16
_WRITE_BUFFER = 1 << 20


class BulkExportError(Exception):
    """The export could not be done. ``message`` is one line for the command line: no token, no resource content."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class BulkSettings:
    #: One HTTP request (discovery, token, kick-off, a status poll); a file download waits this long per read.
    request_timeout_s: float = 30.0
    #: Transient failures (network errors, 429, 503 without the export's answer) retried per request.
    max_retries: int = 3
    backoff_s: float = 1.0
    #: The wait between polls: the server's ``Retry-After`` kept within these bounds; without it, doubling backoff.
    min_poll_interval_s: float = 1.0
    max_poll_interval_s: float = 120.0
    #: Discovery, token, kick-off, status and manifest responses larger than this are refused (not NDJSON files).
    max_json_bytes: int = 20_000_000
    #: All downloaded files together, after gzip decoding: past this the export is refused (a zip bomb, a runaway).
    max_total_bytes: int = 1_000_000_000_000
    #: Manifest pages followed (``link`` ``next``) at most.
    max_manifest_pages: int = 1000
    parallel_downloads: int = 2
    #: Tell the server its files can go once they are all on disk (``DELETE`` on the status URL; the spec's MAY).
    delete_when_done: bool = True
    #: A token with less than this left is replaced before the next request.
    token_refresh_margin_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One downloaded file: its manifest type, where it is now, lines and bytes written (after gzip decoding)."""

    resource_type: str
    path: Path
    lines: int
    bytes: int
    #: The manifest's ``count`` when it gave one.
    declared_count: int | None = None


@dataclass(frozen=True, slots=True)
class ExportIssue:
    """An OperationOutcome issue of the export's error files (diagnostics are not kept: they may name a patient)."""

    severity: str
    code: str
    #: The requested types the issue names (in its expression, location or text), else every requested type.
    resource_types: tuple[str, ...]
    path: Path


@dataclass(frozen=True, slots=True)
class ExportResult:
    out_dir: Path
    transaction_time: str
    #: The kick-off URL as the server recorded it (``request``).
    request: str
    requires_access_token: bool
    types: tuple[str, ...]
    #: The scope the token was granted (as the token endpoint answered, else as requested).
    granted_scope: str
    files: tuple[ExportFile, ...]
    error_files: tuple[ExportFile, ...] = ()
    deleted_files: tuple[ExportFile, ...] = ()
    issues: tuple[ExportIssue, ...] = ()
    #: Unknown data: a type the error files report an error for, or a requested type the token's scope does not
    #: cover. Each makes the rules reading that type say "unknown" for every patient of the export.
    gaps: tuple[DataGap, ...] = ()
    #: The manifest as the server gave it, with the query of every URL removed (it may hold a signature).
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def files_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.resource_type] = counts.get(f.resource_type, 0) + 1
        return counts

    @property
    def lines_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.resource_type] = counts.get(f.resource_type, 0) + f.lines
        return counts

    @property
    def empty_types(self) -> tuple[str, ...]:
        """Requested types the server exported no file for (it holds none of them for these patients)."""
        have = {f.resource_type for f in self.files}
        return tuple(t for t in self.types if t not in have)


# ---------------------------------------------------------------------------------------------------------------
# Keys and the client assertion


@dataclass(frozen=True, slots=True)
class _SigningKey:
    key: RSAKey | ECKey
    alg: str
    kid: str


def load_signing_key(path: Path) -> _SigningKey:
    """A private key from a PEM file or a JWK (or a JWKS holding one private key) in JSON; RSA signs RS384, EC P-384
    signs ES384. The ``kid`` is the JWK's own, else its RFC 7638 thumbprint."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BulkExportError(f"cannot read the private key file {path} ({exc.strerror or exc.__class__.__name__})"
                              ) from exc
    key: Any
    kid: str | None = None
    try:
        if raw.lstrip().startswith(b"{"):
            data = json.loads(raw)
            if isinstance(data, dict) and isinstance(data.get("keys"), list):
                private = [k for k in data["keys"] if isinstance(k, dict) and "d" in k]
                if len(private) != 1:
                    raise BulkExportError(f"the JWKS in {path} must hold exactly one private key")
                data = private[0]
            if not isinstance(data, dict):
                raise ValueError("not a JWK")
            key = JWKRegistry.import_key(data)
            kid = data.get("kid") if isinstance(data.get("kid"), str) else None
        else:
            try:
                key = RSAKey.import_key(raw)
            except (ValueError, TypeError, JoseError):
                key = ECKey.import_key(raw)
    except BulkExportError:
        raise
    except (ValueError, TypeError, KeyError, JoseError) as exc:
        raise BulkExportError(f"{path} is not a PEM private key or a private JWK") from exc
    if not isinstance(key, RSAKey | ECKey):
        raise BulkExportError(f"{path} holds a {key.key_type} key; SMART Backend Services needs an RSA or EC P-384 key")
    if not key.is_private:
        raise BulkExportError(f"{path} holds a public key; the private key is needed to sign the client assertion")
    if isinstance(key, ECKey):
        if key.curve_name != "P-384":
            raise BulkExportError(f"{path} holds an EC {key.curve_name} key; ES384 needs curve P-384")
        alg = "ES384"
    else:
        alg = "RS384"
    return _SigningKey(key, alg, kid or key.thumbprint())


def public_jwks(private_key: Path) -> dict[str, Any]:
    """The JWKS to register at the EHR for this private key (public part, ``alg``, ``use``, ``kid``)."""
    signing = load_signing_key(private_key)
    jwk = signing.key.as_dict(private=False)
    jwk.update({"alg": signing.alg, "use": "sig", "kid": signing.kid})
    return {"keys": [jwk]}


def client_assertion(signing: _SigningKey, client_id: str, token_endpoint: str, *, now: float | None = None) -> str:
    """iss = sub = client_id, aud = the token URL, exp 4 minutes ahead (SMART: at most 5, and clocks drift), a fresh
    jti every time."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": client_id, "sub": client_id, "aud": token_endpoint, "iat": issued, "exp": issued + 240,
              "jti": secrets.token_urlsafe(24)}
    header = {"alg": signing.alg, "kid": signing.kid, "typ": "JWT"}
    return jwt.encode(header, claims, signing.key, algorithms=[signing.alg])


def default_scope(types: Iterable[str], *, v2: bool = True, group: bool = False) -> str:
    """System read scopes for the types (SMART v2 ``.rs``, else v1 ``.read``), and the Group's for a Group export."""
    suffix = ".rs" if v2 else ".read"
    wanted = [*types, "Group"] if group else list(types)
    return " ".join(f"system/{t}{suffix}" for t in dict.fromkeys(wanted))


def scope_covers(scope: str, resource_type: str) -> bool:
    """Whether a system (or user) scope string lets us read this type: v1 ``.read``/``.*``, v2 with ``r``."""
    for item in scope.split():
        head, _, perms = item.partition(".")
        context, _, rtype = head.partition("/")
        if context not in ("system", "user") or rtype not in ("*", resource_type):
            continue
        perms = perms.split("?", 1)[0]
        if perms in ("read", "*") or (perms.isalpha() and perms.islower() and "r" in perms):
            return True
    return False


# ---------------------------------------------------------------------------------------------------------------
# Messages


def _one_line(text: object, limit: int = 200) -> str:
    """Server-supplied text for a message: one line, bounded, anything token-like removed."""
    s = _BEARER.sub("Bearer [removed]", _JWT_LIKE.sub("[token]", str(text)))
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _safe_url(url: str) -> str:
    """A URL for a message or a record: no user information, no query (it can hold a signature), no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _outcome_text(body: Any) -> str:
    """The first issue of an OperationOutcome (or an OAuth error body), in one line."""
    if isinstance(body, dict):
        if body.get("resourceType") == "OperationOutcome":
            for issue in body.get("issue") or []:
                if not isinstance(issue, dict):
                    continue
                details = issue.get("details")
                text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
                code = issue.get("code")
                if text or code:
                    return _one_line(f"{text or ''} ({code})" if text and code else text or code)
        if isinstance(body.get("error"), str):
            desc = body.get("error_description")
            return _one_line(f"{body['error']}: {desc}" if isinstance(desc, str) and desc else body["error"])
    return ""


# ---------------------------------------------------------------------------------------------------------------
# HTTP


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float
    scope: str


class _Session:
    """Discovery, the token (renewed when it nears expiry or is refused once), and capped JSON requests."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, client_id: str, signing: _SigningKey,
                 scope: str | None, types: Sequence[str], group: str | None, settings: BulkSettings) -> None:
        self.http = http
        self.base_url = base_url
        self.origin = _origin(base_url)
        self.client_id = client_id
        self.signing = signing
        self.requested_scope = scope
        self.types = types
        self.group = group
        self.settings = settings
        self.token_endpoint = ""
        self.scope = ""
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return _safe_url(self.base_url).rstrip("/")

    async def discover(self) -> None:
        url = self.base_url + ".well-known/smart-configuration"
        status, _, body = await self.get_json(url, authorised=False, accept="application/json")
        if status != 200 or not isinstance(body, dict):
            raise BulkExportError(f"{self.where} offers no SMART configuration (GET .well-known/smart-configuration "
                                  f"answered HTTP {status}); is it the FHIR base URL?")
        endpoint = body.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise BulkExportError(f"the SMART configuration of {self.where} names no token_endpoint")
        self.token_endpoint = urljoin(self.base_url, endpoint)
        if urlsplit(self.token_endpoint).scheme not in ("http", "https"):
            raise BulkExportError(f"the SMART configuration of {self.where} names a token_endpoint that is not HTTP")
        methods = body.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and methods and "private_key_jwt" not in methods:
            raise BulkExportError(f"the token endpoint of {self.where} does not accept private_key_jwt "
                                  "(SMART Backend Services)")
        algs = body.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(algs, list) and algs and self.signing.alg not in algs:
            raise BulkExportError(f"the token endpoint of {self.where} does not accept {self.signing.alg} client "
                                  f"assertions (it accepts {', '.join(str(a) for a in algs)[:80]})")
        capabilities = body.get("capabilities")
        v2 = not isinstance(capabilities, list) or "permission-v2" in capabilities or \
            "permission-v1" not in capabilities
        self.scope = self.requested_scope or default_scope(self.types, v2=v2, group=self.group is not None)

    async def bearer(self, *, renew: bool = False) -> str:
        async with self._lock:
            token = self._token
            if renew or token is None or token.expires_at - time.monotonic() < self.settings.token_refresh_margin_s:
                token = self._token = await self._fetch_token()
            return token.value

    @property
    def granted_scope(self) -> str:
        return self._token.scope if self._token else self.scope

    async def _fetch_token(self) -> _Token:
        form = {"grant_type": "client_credentials", "scope": self.scope, "client_assertion_type": _ASSERTION_TYPE,
                "client_assertion": client_assertion(self.signing, self.client_id, self.token_endpoint)}
        for attempt in range(self.settings.max_retries + 1):
            try:
                async with self.http.stream("POST", self.token_endpoint, data=form,
                                            headers={"Accept": "application/json"},
                                            timeout=self.settings.request_timeout_s) as response:
                    status, headers = response.status_code, response.headers
                    body = await self._read_json(response)
            except httpx.HTTPError as exc:
                if attempt < self.settings.max_retries:
                    await asyncio.sleep(self.settings.backoff_s * 2 ** attempt)
                    form["client_assertion"] = client_assertion(self.signing, self.client_id, self.token_endpoint)
                    continue
                raise BulkExportError(f"the token endpoint {_safe_url(self.token_endpoint)} cannot be reached "
                                      f"({exc.__class__.__name__})") from exc
            if status in (429, 503) and attempt < self.settings.max_retries:
                await asyncio.sleep(_retry_after(headers.get("Retry-After")) or self.settings.backoff_s * 2 ** attempt)
                # A jti is used once: the retry signs a new assertion.
                form["client_assertion"] = client_assertion(self.signing, self.client_id, self.token_endpoint)
                continue
            break
        value = body.get("access_token") if isinstance(body, dict) else None
        if status != 200 or not isinstance(value, str) or not value:
            reason = _outcome_text(body) or f"HTTP {status}"
            raise BulkExportError(f"the authorization server refused an access token for client "
                                  f"{_one_line(self.client_id, 64)!r} ({reason}); check the client id, the "
                                  "registered public key and the scopes")
        assert isinstance(body, dict)
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise BulkExportError(f"the token endpoint of {self.where} answered a token of type "
                                  f"{_one_line(token_type, 20)!r}, not a bearer token")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 300.0
        scope = body.get("scope") if isinstance(body.get("scope"), str) else self.scope
        return _Token(value, time.monotonic() + seconds, str(scope))

    async def _read_json(self, response: httpx.Response) -> Any:
        size = 0
        chunks: list[bytes] = []
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.settings.max_json_bytes:
                raise BulkExportError(f"{_safe_url(str(response.url))} answered more than "
                                      f"{self.settings.max_json_bytes} bytes where JSON was expected")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            return None

    def check_origin(self, url: str, what: str) -> None:
        if _origin(url) != self.origin:
            raise BulkExportError(f"the {what} {_safe_url(url)} is not on the FHIR server {self.where}; the access "
                                  "token is not sent there")

    async def get_json(self, url: str, *, params: dict[str, str] | None = None, authorised: bool = True,
                       accept: str = "application/fhir+json", extra: dict[str, str] | None = None,
                       method: str = "GET") -> tuple[int, httpx.Headers, Any]:
        """One request, retried on network errors and (when ``method`` allows) 429/503; a 401 renews the token once.
        Answers the status, headers and parsed body (None when not JSON)."""
        renewed = False
        attempt = 0
        while True:
            headers = {"Accept": accept, **(extra or {})}
            if authorised:
                self.check_origin(url, "address")
                headers["Authorization"] = f"Bearer {await self.bearer()}"
            try:
                async with self.http.stream(method, url, params=params, headers=headers,
                                            timeout=self.settings.request_timeout_s) as response:
                    status, got = response.status_code, response.headers
                    body = await self._read_json(response)
            except httpx.HTTPError as exc:
                if attempt < self.settings.max_retries:
                    attempt += 1
                    await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
                    continue
                raise BulkExportError(f"{_safe_url(url)} cannot be reached ({exc.__class__.__name__})") from exc
            if status == 401 and authorised and not renewed:
                renewed = True
                await self.bearer(renew=True)
                continue
            if status == 429 and attempt < self.settings.max_retries:
                attempt += 1
                await asyncio.sleep(_retry_after(got.get("Retry-After")) or self.settings.backoff_s * 2 ** attempt)
                continue
            return status, got, body


# ---------------------------------------------------------------------------------------------------------------
# Downloads


@dataclass(frozen=True, slots=True)
class _Item:
    kind: str  # "output", "error", "deleted"
    resource_type: str
    url: str
    count: int | None
    dest: Path


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise BulkExportError(f"the export's files exceed {self.limit} bytes in all; refused")


class _Sink:
    """A file being written in a worker thread: buffered, 0600, line-counted, checked to look like NDJSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO | None = None
        self._buffer = bytearray()
        self.lines = 0
        self.bytes = 0
        #: What this file took from the export's byte budget (given back when the download is retried).
        self.taken = 0
        self._last = b"\n"
        self._first_seen = False

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._fh = os.fdopen(fd, "wb")

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._first_seen:
            head = data.lstrip()
            if head:
                self._first_seen = True
                if not head.startswith(b"{"):
                    raise ValueError("not NDJSON")
        self.lines += data.count(b"\n")
        self.bytes += len(data)
        self._last = data[-1:]
        self._buffer += data
        if len(self._buffer) >= _WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        assert self._fh is not None
        await asyncio.to_thread(self._fh.write, data)

    async def close(self) -> None:
        if self._buffer:
            await self._flush()
        if self._last != b"\n":
            self.lines += 1
        if self._fh is not None:
            fh, self._fh = self._fh, None
            await asyncio.to_thread(fh.close)

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    async def put(self, data: bytes, budget: _Budget) -> None:
        budget.take(len(data))
        self.taken += len(data)
        await self.write(data)


async def _stream_body(response: httpx.Response, sink: _Sink, budget: _Budget) -> None:
    """The body into the sink; inflated when the file itself is gzip (served as application/gzip, not as a
    Content-Encoding, which httpx already undoes)."""
    await sink.open()
    inflate: Any = None
    async for chunk in response.aiter_bytes(_CHUNK):
        if inflate is None:
            inflate = zlib.decompressobj(47) if chunk[:2] == b"\x1f\x8b" else False
        if not inflate:
            await sink.put(chunk, budget)
            continue
        await sink.put(inflate.decompress(chunk, _WRITE_BUFFER), budget)
        while inflate.unconsumed_tail:  # bounded output per step: a small gzip can inflate enormously
            await sink.put(inflate.decompress(inflate.unconsumed_tail, _WRITE_BUFFER), budget)
    if inflate:
        await sink.put(inflate.flush(), budget)
    await sink.close()


async def _fetch_file(session: _Session, item: _Item, needs_token: bool, sink: _Sink,
                      budget: _Budget) -> tuple[int, float | None, Any]:
    """One GET of the file: (status, Retry-After, error body); a 200's body is in the sink when it returns."""
    headers = {"Accept": "application/fhir+ndjson"}
    if needs_token:
        headers["Authorization"] = f"Bearer {await session.bearer()}"
    # httpx drops the Authorization header on a redirect to another origin.
    async with session.http.stream("GET", item.url, headers=headers, timeout=session.settings.request_timeout_s,
                                   follow_redirects=True) as response:
        if response.status_code == 200:
            await _stream_body(response, sink, budget)
            return 200, None, None
        body: Any = None
        if response.status_code >= 400:
            try:
                body = await session._read_json(response)
            except BulkExportError:
                body = None
        return response.status_code, _retry_after(response.headers.get("Retry-After")), body


async def _download(session: _Session, item: _Item, needs_token: bool, budget: _Budget) -> ExportFile:
    settings = session.settings
    if needs_token:
        session.check_origin(item.url, "file")
    attempt = 0
    renewed = False
    while True:
        sink = _Sink(item.dest)
        try:
            status, retry_after, body = await _fetch_file(session, item, needs_token, sink, budget)
        except (httpx.HTTPError, zlib.error) as exc:
            sink.discard()
            budget.used -= sink.taken
            item.dest.unlink(missing_ok=True)
            if isinstance(exc, httpx.HTTPError) and attempt < settings.max_retries:
                attempt += 1
                await asyncio.sleep(settings.backoff_s * 2 ** (attempt - 1))
                continue
            what = "is not valid gzip" if isinstance(exc, zlib.error) else \
                f"could not be downloaded ({exc.__class__.__name__})"
            raise BulkExportError(f"the export's {item.resource_type} file {_safe_url(item.url)} {what}") from exc
        except ValueError as exc:
            sink.discard()
            raise BulkExportError(f"the export's {item.resource_type} file {_safe_url(item.url)} is not NDJSON"
                                  ) from exc
        except BaseException:
            sink.discard()
            raise
        if status == 200:
            return ExportFile(item.resource_type, item.dest, sink.lines, sink.bytes, item.count)
        sink.discard()
        if status == 401 and needs_token and not renewed:
            renewed = True
            await session.bearer(renew=True)
            continue
        if status in (429, 503) and attempt < settings.max_retries:
            attempt += 1
            await asyncio.sleep(min(retry_after or settings.backoff_s * 2 ** attempt, settings.max_poll_interval_s))
            continue
        reason = _outcome_text(body)
        raise BulkExportError(f"the export's {item.resource_type} file {_safe_url(item.url)} answered HTTP {status}"
                              + (f": {reason}" if reason else ""))


# ---------------------------------------------------------------------------------------------------------------
# The export


def _check_types(types: Sequence[str]) -> tuple[str, ...]:
    if isinstance(types, str):
        types = [t for t in types.split(",") if t]
    wanted = tuple(dict.fromkeys(str(t) for t in types))
    if not wanted:
        raise BulkExportError("no resource types to export")
    bad = [t for t in wanted if not _TYPE_NAME.fullmatch(t)]
    if bad:
        raise BulkExportError(f"{_one_line(bad[0], 64)!r} is not a FHIR resource type name")
    return wanted


def _prepare_out_dir(out_dir: Path) -> Path:
    """Check ``out_dir`` is absent or empty; answer a fresh staging folder beside it (0700)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BulkExportError(f"{out_dir} exists and is not an empty folder; give a new folder for the export")
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".{out_dir.name}.partial-{secrets.token_hex(4)}"
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise BulkExportError(f"cannot create the export folder beside {out_dir} "
                              f"({exc.strerror or exc.__class__.__name__})") from exc
    return staging


def _manifest_items(manifest: dict[str, Any], staging: Path, counters: dict[tuple[str, str], int],
                    base_url: str) -> list[_Item]:
    items: list[_Item] = []
    for kind in ("output", "error", "deleted"):
        entries = manifest.get(kind, [])
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise BulkExportError(f"the export manifest's {kind!r} is not a list")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                raise BulkExportError(f"the export manifest has an {kind} entry without a url")
            rtype = entry.get("type")
            if not isinstance(rtype, str) or not _TYPE_NAME.fullmatch(rtype):
                raise BulkExportError(f"the export manifest has an {kind} entry without a valid resource type")
            url = urljoin(base_url, entry["url"])
            if urlsplit(url).scheme not in ("http", "https"):
                raise BulkExportError(f"the export manifest has an {kind} file that is not an HTTP URL")
            count = entry.get("count")
            n = counters.get((kind, rtype), 0)
            counters[(kind, rtype)] = n + 1
            folder = staging if kind == "output" else staging / kind
            items.append(_Item(kind, rtype, url, count if isinstance(count, int) and count >= 0 else None,
                               folder / f"{rtype}.{n:03d}.ndjson"))
    return items


def _read_issues(files: Sequence[ExportFile], types: Sequence[str], final: Path, staging: Path) -> list[ExportIssue]:
    """The issues of the error files (streamed line by line; at most 10,000 kept)."""
    issues: list[ExportIssue] = []
    names = sorted(types, key=len, reverse=True)
    # A type's name, not a reference (``Patient/123`` says whose data failed, not which type).
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b(?!/)")
    for f in files:
        with f.path.open("rb") as fh:
            for raw in fh:
                if len(issues) >= 10_000:
                    return issues
                try:
                    outcome = json.loads(raw)
                except (ValueError, RecursionError):
                    outcome = None
                if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
                    if raw.strip():
                        issues.append(ExportIssue("error", "unreadable", tuple(types),
                                                  final / f.path.relative_to(staging)))
                    continue
                for issue in outcome.get("issue") or []:
                    if not isinstance(issue, dict):
                        continue
                    text = json.dumps([issue.get("expression"), issue.get("location"), issue.get("diagnostics"),
                                       issue.get("details")])
                    named = tuple(dict.fromkeys(pattern.findall(text)))
                    issues.append(ExportIssue(str(issue.get("severity") or "error")[:20],
                                              str(issue.get("code") or "unknown")[:40], named or tuple(types),
                                              final / f.path.relative_to(staging)))
    return issues


def _gaps(issues: Sequence[ExportIssue], types: Sequence[str], granted_scope: str) -> list[DataGap]:
    gaps: dict[str, DataGap] = {}
    known = {t.value: t for t in ResourceType}
    for issue in issues:
        if issue.severity not in ("error", "fatal"):
            continue
        for t in issue.resource_types:
            if t in known and t not in gaps:
                rt = known[t]
                gaps[t] = DataGap(rt, GapReason.SERVER_ERROR, f"the Bulk export reported an error ({issue.code})",
                                  domains_of(rt), "bulk $export")
    for t in types:
        if t in known and t not in gaps and not scope_covers(granted_scope, t):
            rt = known[t]
            gaps[t] = DataGap(rt, GapReason.NOT_AUTHORIZED_SCOPE, "the access token's scope does not cover it",
                              domains_of(rt), "bulk $export")
    return [gaps[t] for t in types if t in gaps]


def _strip_urls(manifest: dict[str, Any]) -> dict[str, Any]:
    out = dict(manifest)
    for kind in ("output", "error", "deleted"):
        if isinstance(out.get(kind), list):
            out[kind] = [{**e, "url": _safe_url(e["url"])} if isinstance(e, dict) and isinstance(e.get("url"), str)
                         else e for e in out[kind]]
    out.pop("link", None)
    if isinstance(out.get("request"), str):
        out["request"] = _strip_query_secrets(out["request"])
    return out


def _strip_query_secrets(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _finish(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        out_dir.rmdir()  # checked empty before the export started
    staging.rename(out_dir)


async def bulk_export(
    base_url: str,
    out_dir: Path,
    *,
    client_id: str,
    private_key: Path,
    scope: str | None = None,
    group: str | None = None,
    types: Sequence[str] = EXPORT_TYPES,
    http: httpx.AsyncClient | None = None,
    poll_limit_s: float = 6 * 3600.0,
    progress: Callable[[str], None] | None = None,
    settings: BulkSettings | None = None,
) -> ExportResult:
    """Export ``types`` of the Group's patients (every patient without ``group``) into ``out_dir``.

    ``out_dir`` must be absent or empty; it appears, whole, only when every file has arrived: NDJSON files as
    ``<Type>.<nnn>.ndjson``, error files under ``error/``, deleted-resource files under ``deleted/``, and
    ``manifest.json`` (the server's manifest with URL queries removed), folders 0700 and files 0600. ``scope``
    defaults to system read scopes for the types. Raises :class:`BulkExportError` (one line) for anything that stops
    the export; on that, on cancellation and on KeyboardInterrupt the server's export is cancelled with ``DELETE``.
    """
    cfg = settings or BulkSettings()
    wanted = _check_types(types)
    if group is not None and not _FHIR_ID.fullmatch(group):
        raise BulkExportError(f"{_one_line(group, 70)!r} is not a FHIR id (the Group's id is expected)")
    base = base_url.rstrip("/") + "/"
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).hostname:
        raise BulkExportError(f"{_one_line(base_url, 100)!r} is not an http(s) FHIR base URL")
    signing = load_signing_key(private_key)
    say = progress or (lambda _message: None)
    own = http is None
    client = http or http_client(timeout=cfg.request_timeout_s)
    staging = _prepare_out_dir(out_dir)
    session = _Session(client, base, client_id, signing, scope, wanted, group, cfg)
    status_url: str | None = None
    try:
        await session.discover()
        await session.bearer()
        say(f"authorised at {session.where} as client {_one_line(client_id, 64)}")
        status_url = await _kick_off(session, group, wanted)
        say("export started" + (f" for Group/{group}" if group else " for all patients"))
        manifest = await _poll(session, status_url, poll_limit_s, say)
        result = await _download_all(session, manifest, staging, out_dir, wanted, say)
        await asyncio.to_thread(_write_manifest, staging, result.manifest)
        await asyncio.to_thread(_finish, staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if status_url is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await _cancel(session, status_url)
        if own:
            await client.aclose()
        raise
    if cfg.delete_when_done:
        await _cancel(session, status_url)
    if own:
        await client.aclose()
    say(f"export complete: {len(result.files)} files, {sum(f.lines for f in result.files)} resources")
    return result


def _write_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    path = staging / "manifest.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)


async def _kick_off(session: _Session, group: str | None, types: Sequence[str]) -> str:
    path = f"Group/{quote(group, safe='')}/$export" if group else "Patient/$export"
    url = session.base_url + path
    status, headers, body = await session.get_json(url, params={"_type": ",".join(types)},
                                                   extra={"Prefer": "respond-async"})
    what = f"Group/{group}/$export" if group else "Patient/$export"
    if status != 202:
        reason = _outcome_text(body)
        hint = " (the token's scope may not allow it)" if status == 403 else ""
        raise BulkExportError(f"{session.where} refused {what}: HTTP {status}" + (f": {reason}" if reason else "")
                              + hint)
    location = headers.get("Content-Location")
    if not location:
        raise BulkExportError(f"{session.where} accepted {what} but gave no Content-Location to poll")
    status_url = urljoin(session.base_url, str(location))
    session.check_origin(status_url, "export status URL")
    return status_url


async def _poll(session: _Session, status_url: str, poll_limit_s: float, say: Callable[[str], None]
                ) -> dict[str, Any]:
    cfg = session.settings
    deadline = time.monotonic() + poll_limit_s
    backoff = cfg.min_poll_interval_s
    transient = 0
    while True:
        status, headers, body = await session.get_json(status_url, accept="application/json")
        if status == 200:
            if not isinstance(body, dict):
                raise BulkExportError(f"the export manifest from {session.where} is not a JSON object")
            return body
        if status == 202 or (status in (429, 503) and transient < cfg.max_retries):
            if status != 202:
                transient += 1
            else:
                transient = 0
                progress = headers.get("X-Progress")
                say("export in progress" + (f": {_one_line(progress, 100)}" if progress else ""))
            wait = _retry_after(headers.get("Retry-After"))
            if wait is None:
                wait, backoff = backoff, min(backoff * 2, cfg.max_poll_interval_s)
            wait = min(max(wait, cfg.min_poll_interval_s), cfg.max_poll_interval_s)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BulkExportError(f"the export at {session.where} did not finish within {poll_limit_s:g} s; it "
                                      "was cancelled (a longer poll limit may help)")
            await asyncio.sleep(min(wait, left))
            continue
        reason = _outcome_text(body)
        raise BulkExportError(f"the export at {session.where} failed: HTTP {status}"
                              + (f": {reason}" if reason else ""))


async def _manifest_pages(session: _Session, manifest: dict[str, Any], staging: Path,
                          ) -> tuple[list[dict[str, Any]], list[_Item]]:
    """Every page of the manifest (``link`` ``next``, bounded) and the files they list."""
    cfg = session.settings
    counters: dict[tuple[str, str], int] = {}
    items = _manifest_items(manifest, staging, counters, session.base_url)
    pages = [manifest]
    while (next_url := _next_link(pages[-1])) is not None:
        if len(pages) >= cfg.max_manifest_pages:
            raise BulkExportError(f"the export manifest has more than {cfg.max_manifest_pages} pages")
        status, _, body = await session.get_json(urljoin(session.base_url, next_url), accept="application/json")
        if status != 200 or not isinstance(body, dict):
            raise BulkExportError(f"a page of the export manifest answered HTTP {status}")
        items += _manifest_items(body, staging, counters, session.base_url)
        pages.append(body)
    return pages, items


async def _fetch_files(session: _Session, items: Sequence[_Item], requires_token: bool, staging: Path,
                       say: Callable[[str], None]) -> list[ExportFile]:
    """Download the files, ``parallel_downloads`` at a time, under one byte budget; the first failure ends all."""
    cfg = session.settings
    for kind in ("error", "deleted"):
        if any(i.kind == kind for i in items):
            (staging / kind).mkdir(mode=0o700, exist_ok=True)
    say(f"downloading {len(items)} files")
    budget = _Budget(cfg.max_total_bytes)
    limit = asyncio.Semaphore(max(1, cfg.parallel_downloads))

    async def fetch(item: _Item) -> ExportFile:
        async with limit:
            done = await _download(session, item, requires_token, budget)
            say(f"downloaded {item.dest.relative_to(staging)} ({done.lines} lines)")
            return done

    tasks: list[asyncio.Task[ExportFile]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(fetch(item)) for item in items]
    except BaseExceptionGroup as eg:
        first = next((e for e in _leaves(eg) if isinstance(e, BulkExportError)), None)
        if first is not None:
            raise first from None
        raise
    return [t.result() for t in tasks]


async def _download_all(session: _Session, manifest: dict[str, Any], staging: Path, out_dir: Path,
                        types: Sequence[str], say: Callable[[str], None]) -> ExportResult:
    requires_token = manifest.get("requiresAccessToken")
    if not isinstance(requires_token, bool):
        raise BulkExportError("the export manifest lacks requiresAccessToken")
    transaction_time = manifest.get("transactionTime")
    if not isinstance(transaction_time, str):
        raise BulkExportError("the export manifest lacks transactionTime")
    pages, items = await _manifest_pages(session, manifest, staging)
    downloaded = await _fetch_files(session, items, requires_token, staging, say)

    def moved(f: ExportFile) -> ExportFile:
        return ExportFile(f.resource_type, out_dir / f.path.relative_to(staging), f.lines, f.bytes, f.declared_count)

    by_kind: dict[str, list[ExportFile]] = {"output": [], "error": [], "deleted": []}
    for f, item in zip(downloaded, items, strict=True):
        by_kind.setdefault(item.kind, []).append(f)
    issues = await asyncio.to_thread(_read_issues, by_kind["error"], types, out_dir, staging)
    granted = session.granted_scope
    merged = dict(manifest)
    for kind in ("output", "error", "deleted"):
        merged[kind] = [e for p in pages for e in (p.get(kind) or [])]
    return ExportResult(
        out_dir=out_dir,
        transaction_time=transaction_time,
        request=_strip_query_secrets(str(manifest.get("request") or "")),
        requires_access_token=requires_token,
        types=tuple(types),
        granted_scope=granted,
        files=tuple(moved(f) for f in by_kind["output"]),
        error_files=tuple(moved(f) for f in by_kind["error"]),
        deleted_files=tuple(moved(f) for f in by_kind["deleted"]),
        issues=tuple(issues),
        gaps=tuple(_gaps(issues, types, granted)),
        manifest=_strip_urls(merged),
    )


def _leaves(eg: BaseExceptionGroup[BaseException]) -> Iterable[BaseException]:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def _next_link(page: dict[str, Any]) -> str | None:
    for link in page.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


async def _cancel(session: _Session, status_url: str | None) -> None:
    """DELETE on the status URL, best effort and briefly (also while the task is being cancelled)."""
    if status_url is None:
        return
    try:
        token = session._token.value if session._token else None
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        await asyncio.shield(session.http.delete(status_url, headers=headers, timeout=5.0))
    except (httpx.HTTPError, OSError):
        pass

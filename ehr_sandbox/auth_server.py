"""The sandbox's SMART authorization server, built on Authlib's OAuth 2.0 server framework.

Authorization code with PKCE (S256 required; ``plain`` refused), refresh tokens, SMART launch context in the token
response (patient, encounter, fhirContext, need_patient_banner, smart_style_url, intent, tenant, appContext), an
RS256-signed id_token with fhirUser, and public, symmetric and asymmetric (private_key_jwt) clients. Everything is in
memory: this is a stand-in EHR for the demo and the tests, never production.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

ACCESS_TOKEN_TTL_S = 3600
CODE_TTL_S = 60


@dataclass
class SandboxClient(ClientMixin):  # type: ignore[misc]
    client_id: str
    redirect_uris: list[str]
    auth_method: str = "none"  # none, client_secret_basic, client_secret_post, private_key_jwt
    client_secret: str | None = None
    jwks: dict[str, Any] | None = None
    grantable_types: frozenset[str] | None = None  # None: every resource type asked for

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        """The grant may be narrower than the request (SMART: granted is not requested)."""
        if self.grantable_types is None:
            return scope
        kept = []
        for item in scope.split():
            rtype = item.split("/", 1)[1].split(".", 1)[0] if item.startswith(("patient/", "user/")) else None
            if rtype is None or rtype in self.grantable_types:
                kept.append(item)
        return " ".join(kept)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token":
            return True
        return method == self.auth_method or (method == "client_assertion_jwt" and self.auth_method ==
                                               "private_key_jwt")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True)
class LaunchContext:
    """What the EHR knows at launch: the chart's patient, the user, and how to present the app."""

    patient: str | None
    user: str = "Practitioner/sandbox-clinician"
    encounter: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = ()
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    intent: str | None = None
    tenant: str | None = None
    app_context: str | None = None
    simulate_error: str | None = None  # access_denied, invalid_scope: the EHR's answer instead of a code


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    context: LaunchContext
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.expires_at - CODE_TTL_S)


@dataclass
class IssuedToken:
    access_token: str
    client_id: str
    scope: str
    context: LaunchContext
    expires_at: float
    refresh_token: str | None = None
    revoked: bool = False

    def get_scope(self) -> str:
        return self.scope

    def get_client_id(self) -> str:
        return self.client_id

    def is_revoked(self) -> bool:
        return self.revoked

    def is_expired(self) -> bool:
        return time.time() > self.expires_at

    def check_client(self, client: SandboxClient) -> bool:
        return client.client_id == self.client_id


@dataclass
class _Store:
    clients: dict[str, SandboxClient] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    refresh: dict[str, IssuedToken] = field(default_factory=dict)
    launches: dict[str, LaunchContext] = field(default_factory=dict)
    launch_created: dict[str, float] = field(default_factory=dict)
    jtis: set[str] = field(default_factory=set)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._values.items()}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, self._values)


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: Any, args: dict[str, list[str]],
                 form: dict[str, list[str]]) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args = {k: v[0] for k, v in args.items()}
        self._form = {k: v[0] for k, v in form.items()}
        self.payload = _Payload({**args, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


async def oauth_request(request: Request) -> _Request:
    form: dict[str, list[str]] = defaultdict(list)
    if request.method == "POST":
        for key, value in (await request.form()).multi_items():
            form[key].append(str(value))
    args: dict[str, list[str]] = defaultdict(list)
    for key, value in request.query_params.multi_items():
        args[key].append(value)
    # Starlette's Headers are case-insensitive, as Authlib expects ("Authorization" for client_secret_basic).
    return _Request(request.method, str(request.url), request.headers, dict(args), dict(form))


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none", "client_secret_basic", "client_secret_post",
                                                        "client_assertion_jwt"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        store: _Store = self.server.store
        granted = request.client.get_allowed_scope(data.get("scope", ""))
        store.codes[code] = _Code(code, request.client.client_id, data.get("redirect_uri", ""),
                                  granted, request.user, data.get("code_challenge"),
                                  data.get("code_challenge_method"), data.get("nonce"), time.time() + CODE_TTL_S)

    def query_authorization_code(self, code: str, client: SandboxClient) -> _Code | None:
        store: _Store = self.server.store
        item = store.codes.get(code)
        if item and item.client_id == client.client_id and item.expires_at > time.time():
            return item
        return None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        self.server.store.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: _Code) -> LaunchContext:
        return authorization_code.context


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none", "client_secret_basic", "client_secret_post",
                                                        "client_assertion_jwt"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        token = self.server.store.refresh.get(refresh_token)
        return token if token and not token.revoked else None

    def authenticate_user(self, credential: IssuedToken) -> LaunchContext:
        return credential.context

    def revoke_old_credential(self, credential: IssuedToken) -> None:
        # A refresh token is used once (SMART best practice); the new one replaces it.
        credential.revoked = True
        self.server.store.refresh.pop(credential.refresh_token or "", None)


class _S256Only(CodeChallenge):  # type: ignore[misc]
    """SMART: every client uses PKCE with S256 (Authlib's extension lets a request without any challenge through
    at the authorization endpoint, and asks confidential clients for no verifier)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


class _PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """private_key_jwt: the client's assertion, signed RS384/ES384, expiring within 5 minutes, jti used once."""

    def __init__(self, server: SandboxAuthServer) -> None:
        super().__init__(validate_jti=True)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [self.server.token_url]

    def resolve_client_public_key(self, client: SandboxClient) -> KeySet:
        if not client.jwks:
            raise InvalidClientError(description="client has no registered JWKS")
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        # SMART asymmetric clients sign with RS384 or ES384, which joserfc refuses unless named.
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=["RS384", "ES384"])
        except JoseError as exc:
            raise InvalidClientError(description=exc.description) from exc
        self.verify_claims(token.claims)
        return dict(token.claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        if jti in self.server.store.jtis:
            return False
        if float(claims.get("exp", 0)) - time.time() > 300 + 5:
            raise InvalidClientError(description="client assertion exp must be at most 5 minutes ahead")
        self.server.store.jtis.add(jti)
        return True


class SandboxAuthServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, issuer: str, fhir_base: str, token_url: str, signing_key: RSAKey,
                 access_token_ttl_s: int = ACCESS_TOKEN_TTL_S) -> None:
        super().__init__()
        self.issuer = issuer
        self.fhir_base = fhir_base
        self.token_url = token_url
        self.signing_key = signing_key
        self.store = _Store()
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda *_, **__: secrets.token_urlsafe(32),
            refresh_token_generator=lambda *_, **__: secrets.token_urlsafe(48),
            expires_generator=lambda *_, **__: access_token_ttl_s))
        self.register_grant(_CodeGrant, [_S256Only(required=True)])
        self.register_grant(_RefreshGrant)
        self.register_client_auth_method(_PrivateKeyJwt.CLIENT_AUTH_METHOD, _PrivateKeyJwt(self))

    # -- Authlib integration points -----------------------------------------------------------------------------

    def query_client(self, client_id: str) -> SandboxClient | None:
        return self.store.clients.get(client_id)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        header_map = dict(headers)
        if status == 302 and "Location" in header_map:
            return RedirectResponse(header_map["Location"], status_code=302)
        return JSONResponse(body, status_code=status, headers=header_map)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        context: LaunchContext = request.user
        scope = token.get("scope", "")
        scopes = scope.split()
        if not {"offline_access", "online_access"} & set(scopes):
            token.pop("refresh_token", None)  # SMART: refresh tokens only when asked for
        issued = IssuedToken(token["access_token"], request.client.client_id, scope, context,
                             time.time() + int(token.get("expires_in", ACCESS_TOKEN_TTL_S)),
                             token.get("refresh_token"))
        self.store.tokens[issued.access_token] = issued
        if issued.refresh_token:
            self.store.refresh[issued.refresh_token] = issued
        # The token response is this same dict: the SMART launch context travels with it.
        if context.patient:
            token["patient"] = context.patient
        if context.encounter:
            token["encounter"] = context.encounter
        if context.fhir_context:
            token["fhirContext"] = list(context.fhir_context)
        token["need_patient_banner"] = context.need_patient_banner
        for key, value in (("smart_style_url", context.smart_style_url), ("intent", context.intent),
                           ("tenant", context.tenant), ("appContext", context.app_context)):
            if value:
                token[key] = value
        if "openid" in scopes:
            # The nonce was sent with the authorization request; it is kept with the code.
            code = request.authorization_code
            token["id_token"] = self.id_token(request.client.client_id, context, code.nonce if code else None)

    def id_token(self, client_id: str, context: LaunchContext, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": context.user.rsplit("/", 1)[-1], "aud": client_id, "iat": now,
                  "exp": now + 300, "fhirUser": f"{self.fhir_base}/{context.user}"}
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": self.signing_key.kid, "typ": "JWT"}, claims, self.signing_key,
                          algorithms=["RS256"])

    # -- SMART specifics ----------------------------------------------------------------------------------------

    #: A launch id is good once, for this long: a leaked launch URL is worth nothing afterwards.
    launch_ttl_s = 600.0

    def new_launch(self, context: LaunchContext) -> str:
        launch = secrets.token_urlsafe(16)
        now = time.time()
        for old in [k for k, t in self.store.launch_created.items() if now - t > self.launch_ttl_s]:
            self.store.launches.pop(old, None)
            self.store.launch_created.pop(old, None)
        self.store.launches[launch] = context
        self.store.launch_created[launch] = now
        return launch

    def _take_launch(self, launch: str) -> LaunchContext | None:
        context = self.store.launches.pop(launch, None)
        created = self.store.launch_created.pop(launch, 0.0)
        if context is None or time.time() - created > self.launch_ttl_s:
            return None
        return context

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.signing_key]).as_dict(private=False))

    def cds_token(self, patient: str, scope: str, ttl_s: int = 300) -> str:
        """A short-lived access token for a CDS service's FHIR fallback (CDS Hooks ``fhirAuthorization``)."""
        context = LaunchContext(patient=patient, encounter=None, need_patient_banner=False, smart_style_url=None,
                                intent=None, tenant="sandbox", app_context=None)
        issued = IssuedToken(secrets.token_urlsafe(32), "cds-service", scope, context, time.time() + ttl_s)
        self.store.tokens[issued.access_token] = issued
        return issued.access_token

    def bearer(self, authorization: str | None) -> IssuedToken | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = self.store.tokens.get(authorization.removeprefix("Bearer ").strip())
        if token is None or token.revoked or token.is_expired():
            return None
        return token

    async def authorize(self, request: Request, standalone_patient: str) -> Response:
        """The authorization endpoint: the sandbox's clinician is signed in and consents at once."""
        req = await oauth_request(request)
        data = req.payload.data
        try:
            grant = self.get_consent_grant(req)
        except OAuth2Error as error:
            failed: Response = self.handle_error_response(req, error)
            return failed
        launch = data.get("launch")
        if launch:
            context = self._take_launch(launch)
            if context is None:
                return self._redirect_error(data, "invalid_request", "unknown, used or expired launch")
        else:
            context = LaunchContext(patient=standalone_patient if "launch/patient" in data.get("scope", "")
                                    else None)
        if data.get("aud", "").rstrip("/") != self.fhir_base.rstrip("/"):
            return self._redirect_error(data, "invalid_request", "aud must be this EHR's FHIR base URL")
        if context.simulate_error:
            return self._redirect_error(data, context.simulate_error, "simulated by the sandbox")
        response: Response = self.create_authorization_response(req, grant_user=context, grant=grant)
        return response

    def _redirect_error(self, data: dict[str, str], error: str, description: str) -> Response:
        if not data.get("redirect_uri"):
            # Nowhere to send the error (RFC 6749 §4.1.2.1): say it here, as a 400.
            return JSONResponse({"error": error, "error_description": description}, status_code=400)
        params = {"error": error, "error_description": description}
        if data.get("state"):
            params["state"] = data["state"]
        return RedirectResponse(f"{data['redirect_uri']}?{urlencode(params)}", status_code=302)

    async def token(self, request: Request) -> Response:
        response: Response = self.create_token_response(await oauth_request(request))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

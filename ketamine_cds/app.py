"""The application factory: one ASGI app serving the CDS Hooks service (and the SMART app) from settings."""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_hooks import CdsOptions, FeedbackStore, JwksCache, JwtVerifier, TrustedClient, build_router
from cds_hooks.errors import operation_outcome
from eligibility import load_policy
from fhir_mapping import CodeSets

from .settings import Settings, SettingsError

log = logging.getLogger("ketamine_cds")


def trusted_clients(settings: Settings) -> list[TrustedClient]:
    clients = []
    for c in settings.cds.clients:
        if c.jwks_file is not None:
            try:
                jwks = json.loads(c.jwks_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SettingsError(f"client {c.issuer}: cannot read jwks_file {c.jwks_file}: {exc}") from exc
            clients.append(TrustedClient(c.issuer, jwks=jwks, tenant=c.tenant))
        else:
            clients.append(TrustedClient(c.issuer, jwks_url=c.jwks_url, tenant=c.tenant))
    return clients


def _configure_audit(path: Path | None) -> None:
    logger = logging.getLogger("ketamine_cds.audit")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)


def create_app(
    settings: Settings,
    *,
    insecure_no_auth: bool = False,
    http: httpx.AsyncClient | None = None,
    today: Callable[[], dt.date] | None = None,
    configure_logging: bool = True,
) -> FastAPI:
    policy = load_policy(settings.cds.policy)
    CodeSets.load()  # code sets are static: load them before requests arrive
    feedback = FeedbackStore(settings.cds.feedback_db)
    own_http = http is None
    client = http or httpx.AsyncClient(timeout=settings.cds.fhir_budget_s)
    verifier = None if insecure_no_auth else JwtVerifier(trusted_clients(settings), JwksCache(client))
    if configure_logging:
        _configure_audit(settings.cds.audit_log)
    options = CdsOptions(
        public_base_url=settings.cds.public_base_url,
        policy=policy,
        feedback=feedback,
        verifier=verifier,
        discovery_requires_auth=settings.cds.discovery_requires_auth,
        max_body_bytes=settings.cds.max_body_bytes,
        fhir_budget_s=settings.cds.fhir_budget_s,
        smart_launch_url=settings.cds.public_base_url + "/smart/launch",
        audit_salt=settings.cds.audit_salt,
        http=client,
        today=today or dt.date.today,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if own_http:
            await client.aclose()
        feedback.close()

    app = FastAPI(title="ketamine-cds", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.feedback = feedback
    app.state.options = options
    app.include_router(build_router(options))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cds.cors_allow_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return JSONResponse(operation_outcome(code, str(exc.detail)), status_code=exc.status_code,
                            media_type="application/fhir+json")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(operation_outcome("invalid", "invalid request"), status_code=400,
                            media_type="application/fhir+json")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace to the caller; the log has the type only (no PHI from messages).
        log.error("unexpected error: %s", exc.__class__.__name__)
        return JSONResponse(operation_outcome("exception", "internal error"), status_code=500,
                            media_type="application/fhir+json")

    # Everything built so far lives as long as the process. Freezing it keeps the cyclic GC from walking it on
    # every collection that a large request body's allocations trigger (measured: a 0.5 MB prefetch took 17 ms
    # to parse inside the service against 3 ms alone).
    gc.freeze()
    return app

"""Generated hostile requests against every service, feedback and SMART endpoint of the whole app: never a 5xx,
and every CDS error is an OperationOutcome. CI runs this bounded sample; ``bench/fuzz.py`` runs thousands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from .hostile import (
    CDS_ENDPOINTS,
    SMART_ENDPOINTS,
    HostileRequest,
    Target,
    hostile_cds_request,
    hostile_smart_request,
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"))
    yield t
    t.close()


def check(response: httpx.Response, req: HostileRequest) -> None:
    assert response.status_code < 500, (req, response.text[:300])
    if req.path.startswith("/cds-services") and response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.text


FUZZ = settings(max_examples=30, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("path", CDS_ENDPOINTS)
def test_cds_endpoints_never_answer_5xx(target: Target, path: str) -> None:
    @FUZZ
    @given(hostile_cds_request(path))
    def run(req: HostileRequest) -> None:
        check(target.send(req), req)

    run()


@pytest.mark.parametrize("path", SMART_ENDPOINTS)
def test_smart_endpoints_never_answer_5xx(target: Target, path: str) -> None:
    @FUZZ
    @given(hostile_smart_request(path))
    def run(req: HostileRequest) -> None:
        check(target.send(req), req)

    run()


SESSION_ENDPOINTS = tuple(p for p in CDS_ENDPOINTS if "session" in p)


@pytest.fixture(scope="module")
def postgres_target(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz-pg"), postgres.create_database("fuzz_sessions"))
    yield t
    t.close()


@pytest.mark.parametrize("path", SESSION_ENDPOINTS)
def test_session_endpoints_and_their_feedback_never_answer_5xx_on_postgresql(postgres_target: Target,
                                                                             path: str) -> None:
    # The strings PostgreSQL refuses (NUL, over-length) and SQLite does not: the same generated requests, both stores.
    @FUZZ
    @given(hostile_cds_request(path))
    def run(req: HostileRequest) -> None:
        check(postgres_target.send(req), req)

    run()


def test_the_generators_reach_the_rules(target: Target) -> None:
    # A sanity check that the fuzzing is not all bounced at the door: a plausible body gets through to cards.
    from .cds_hooks.conftest import draft_order, hook_request

    # A draft order of its own: the generated order-selects before it may have shown draft-1's cards already (and
    # order-sign does not repeat them).
    body = json.dumps(hook_request("01", orders=[draft_order("kc-01", "draft-sanity")])).encode()
    r = target.send(HostileRequest("POST", "/cds-services/ketamine-order-sign", "application/json", body, {}))
    assert r.status_code == 200 and r.json()["cards"]



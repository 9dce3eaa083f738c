"""The SMART endpoints under generated hostile requests with the shared state on PostgreSQL, which refuses strings
SQLite keeps (a NUL, an over-length key): never a 5xx, never a stack trace (the SQLite run is tests/test_fuzz.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from ..hostile import SMART_ENDPOINTS, HostileRequest, Target, hostile_smart_request


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz-smart-pg"), postgres.create_database("fuzz_smart"))
    yield t
    t.close()


@pytest.mark.parametrize("path", SMART_ENDPOINTS)
def test_smart_endpoints_never_answer_5xx_on_postgresql(target: Target, path: str) -> None:
    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(hostile_smart_request(path))
    # The values that reached PostgreSQL and failed there before the store refused them itself.
    @example(HostileRequest("GET", "/smart/callback", None, b"", {"state": "a\x00b", "code": "c"}))
    @example(HostileRequest("GET", "/smart/callback", None, b"", {"state": "s" * 300, "error": "access_denied"}))
    @example(HostileRequest("GET", "/smart/app/a%00b", None, b"", {}))
    @example(HostileRequest("POST", "/smart/app/a%00b/logout", "application/x-www-form-urlencoded", b"csrf=x", {}))
    def run(req: HostileRequest) -> None:
        response = target.send(req)
        assert response.status_code < 500, (req, response.text[:300])
        assert "Traceback" not in response.text

    run()

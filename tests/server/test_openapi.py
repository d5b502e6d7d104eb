"""The served OpenAPI document is accurate (issue 11, item 8): a short, bounded schemathesis run
against `/openapi.json` of a real server on each store finds no 5xx and no response that breaks
the document (status code, content type, headers, body schema)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.support.checkout import ADMIN, SMALL_SCENARIO
from tests.support.servers import StartServer

pytestmark = pytest.mark.slow
EXAMPLES = 12  # per operation: bounded, about 25 operations


def test_schemathesis_finds_no_5xx_and_no_response_off_the_spec(
        real_store_url: str, tmp_path: Path, start_server: StartServer) -> None:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    scenario = tmp_path / "s.toml"
    scenario.write_text(SMALL_SCENARIO.format(stock=50, pool=5))
    server = start_server(scenario, real_store_url)
    user = httpx.post(f"{server.url}/v1/admin/user-tokens", json={"user_ids": ["fz"]},
                      headers={"Authorization": f"Bearer {ADMIN}"}).json()["tokens"]["fz"]
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    calls: Counter = Counter()
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 19  # every route of the contract
    for op in operations:
        token = ADMIN if "admin" in (op.tags or []) else user
        try:
            _fuzz(op, server.url, token, checks, failures, calls)()
        except Exception as exc:  # anything not a check failure is a test failure
            if not failures:
                raise
            assert failures[-1].startswith(f"{op.method.upper()} {op.path}"), exc
    assert failures == []
    assert sum(calls.values()) > 5 * len(operations), calls
    assert not [s for s in calls if s >= 500], calls


def _fuzz(op, base_url: str, token: str, checks: list, failures: list[str], calls: Counter):
    """A bounded hypothesis run of one operation; a response off the spec is recorded."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case) -> None:
        resp = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
        calls[resp.status_code] += 1
        try:
            case.validate_response(resp, checks=checks)
        except Exception as exc:
            failures.append(f"{op.method.upper()} {op.path}: {resp.status_code} "
                            f"{str(exc)[:400]}")
            raise
    return run

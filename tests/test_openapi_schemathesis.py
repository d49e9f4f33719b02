"""The OpenAPI document is true: generated requests (admin token) never get a 5xx, and every
response matches the schema `/api/openapi.json` promises. Bounded so the suite stays fast.

Driven through schemathesis' Python API (operations → hypothesis strategies) rather than its
pytest plugin, whose lazy fixture loader does not work with pytest 9 yet.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

ADMIN = {"Authorization": "Bearer admin-token"}
EXAMPLES_PER_OPERATION = 6  # a smoke test in CI; run more with `schemathesis run` by hand
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]

schemathesis.serializer.alias("audio/wav", "application/octet-stream")  # prompt uploads: raw bytes


def test_api_matches_its_openapi_document(make_app) -> None:  # type: ignore[no-untyped-def]
    # Twilio REST on a closed local port: POST /api/calls must fail fast (502), not leave the machine.
    app = make_app(api_rate_limit="0", twilio_api_base="http://127.0.0.1:9")
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        try:
            check()
        except Exception as error:  # noqa: BLE001 - collect every operation's failure, then report
            failures.append(f"{operation.label}: {str(error)[:600]}")
    assert not failures, "\n\n".join(failures)

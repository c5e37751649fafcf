"""A NUL character (``\\x00``: ``%00`` in a URL, ``\\u0000`` in JSON) is refused wherever a request
carries text, with a 422 that names it and says where, and changes nothing, on SQLite and
PostgreSQL alike: PostgreSQL cannot store it, and it used to answer 500 where SQLite stored it.

The routes come from the app's own OpenAPI document, so a new route is checked without being
listed here; a new route with a JSON body needs a valid body in ``BODIES``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError

from backfill.api import errors
from backfill.store.models import Tenant
from tests.conftest import Platform

NUL = "a\x00b"
NUL_IN_URL = "a%00b"
OPENAI_ROUTES = {
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models/{model}"),
}
"""They answer in OpenAI's shape, take no JSON schema of ours, and are checked on their own."""

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/leases"): {"tier": "spot", "gpus": 1, "region": "eu-west", "command": "true"},
    ("PUT", "/v1/budgets/keys/{key_id}"): {"limit": "5"},
    ("PUT", "/v1/webhook"): {"url": "https://example.com/hooks"},
    ("POST", "/v1/admin/tenants"): {"name": "fresh"},
    ("PUT", "/v1/admin/tenants/{tenant_id}/quota"): {"gpus": 8},
    ("POST", "/v1/admin/internal-jobs"): {"gpus": 1, "region": "eu-west", "team": "owner"},
    ("POST", "/v1/admin/nodes/{node}/down"): {"reason": "maintenance"},
    ("POST", "/v1/admin/clock/advance"): {"seconds": 1},
    ("POST", "/v1/admin/tenants/{tenant}/credits"): {"amount": "10", "note": "welcome"},
    ("POST", "/v1/spend/holds"): {"tenant_id": "{tenant}", "amount": "1", "description": "run"},
    ("POST", "/v1/spend/holds/{hold_id}/settle"): {"amount": "1"},
    ("POST", "/v1/admin/prices"): {
        "product": "tool",
        "item": "search",
        "dimension": "calls",
        "price": "0.01",
        "note": "launch",
    },
    ("POST", "/v1/admin/invoices"): {"month": "2026-01", "tenant_id": "{tenant}"},
    ("POST", "/v1/admin/invoices/{invoice_id}/credit-notes"): {"amount": "1", "reason": "sorry"},
    ("POST", "/v1/admin/deployments"): {
        "model": "tiny",
        "weights": "/nowhere/tiny.gguf",
        "replicas": 0,
        "tenant_id": "{tenant}",
    },
    ("PATCH", "/v1/admin/deployments/{deployment_id}"): {"replicas": 1},
    ("PUT", "/v1/admin/tenants/{tenant_id}/rate-limits"): {"requests_per_minute": 10},
    ("PUT", "/v1/admin/tenants/{tenant_id}/keys/{key_id}/rate-limits"): {"tokens_per_minute": 10},
}
"""A valid body per route that takes JSON ("{tenant}": the test tenant's id)."""


class Caller:
    """The platform with one tenant: who calls each route, and the ids its path parameters take."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.tenant, self.tenant_id = platform.tenant_and_id("nul-check")
        self.key_id = str(self.tenant.get("/v1/keys").json()["data"][0]["id"])
        self.spec: dict[str, Any] = platform.client(None).get("/openapi.json").json()

    def client(self, method: str, path: str) -> httpx.Client:
        operator_only = path.startswith(("/v1/admin/", "/v1/spend/", "/metrics"))
        if operator_only or (method, path) == ("POST", "/v1/events"):
            return self.platform.operator
        return self.tenant

    def value(self, name: str) -> str:
        """A real id where one exists, so that a check on a later parameter is reached."""
        if name in ("tenant", "tenant_id"):
            return self.tenant_id
        if name == "key_id":
            return self.key_id
        return "nothing-here"

    def url(self, path: str, values: dict[str, str]) -> str:
        for name in _path_params(path):
            path = path.replace("{" + name + "}", values.get(name, self.value(name)))
        return path

    def body(self, method: str, path: str) -> dict[str, Any] | None:
        body = BODIES.get((method, path))
        if body is None:
            return None
        return {k: self.tenant_id if v == "{tenant}" else v for k, v in body.items()}

    def send(
        self,
        method: str,
        path: str,
        *,
        values: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body = body if body is not None else self.body(method, path)
        return self.client(method, path).request(
            method.upper(), self.url(path, values or {}), params=params, json=body
        )

    def operations(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (method.upper(), path, operation)
            for path, item in self.spec["paths"].items()
            for method, operation in item.items()
            if (method.upper(), path) not in OPENAI_ROUTES
        ]

    def state(self) -> tuple[Any, ...]:
        """Everything a refused request must leave as it was."""
        op, t = self.platform.operator, self.tenant_id
        dashboard = op.get("/v1/admin/dashboard").json()
        return (
            op.get("/v1/admin/tenants").json(),
            op.get(f"/v1/admin/tenants/{t}/keys").json(),
            op.get(f"/v1/admin/tenants/{t}/budgets").json(),
            op.get(f"/v1/admin/tenants/{t}/events").json(),
            op.get("/v1/admin/internal-jobs").json(),
            op.get("/v1/admin/deployments").json(),
            op.get("/v1/admin/invoices").json(),
            op.get("/v1/admin/clock").json(),
            (dashboard["by_tier"], dashboard["idle"], dashboard["down"]),
            self.tenant.get("/v1/leases").json(),
            self.tenant.get("/v1/prices").json(),
            self.tenant.get("/v1/webhook").json(),
        )


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _takes_text(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" or any(_takes_text(s) for s in schema.get("anyOf", []))


def _problem(response: httpx.Response, field: str) -> str | None:
    """Why ``response`` is not a refusal of the NUL in ``field``; None when it is."""
    if response.status_code != 422:
        return f"{response.status_code} {response.text[:300]}"
    error = response.json().get("error") or {}
    if error.get("code") != "invalid_request" or error.get("field") != field:
        return f"not refused as invalid_request in {field}: {error}"
    if "NUL" not in error.get("message", ""):
        return f"the message does not name the NUL character: {error.get('message')!r}"
    return None


def test_a_nul_in_any_path_parameter_is_refused_by_name(platform: Platform) -> None:
    caller = Caller(platform)
    routes = [(m, p) for m, p, _ in caller.operations() if _path_params(p)]
    for method, path in routes:  # the right key, harmless values: not refused for the key
        plain = caller.send(method, path, values=dict.fromkeys(_path_params(path), "nothing"))
        assert plain.status_code not in (401, 403, 500), f"{method} {path}: {plain.text}"
    before = caller.state()
    failures, checked = [], 0
    for method, path in routes:
        for name in _path_params(path):
            response = caller.send(method, path, values={name: NUL_IN_URL})
            checked += 1
            if (problem := _problem(response, name)) is not None:
                failures.append(f"{method} {caller.url(path, {name: NUL_IN_URL})}: {problem}")
    assert checked >= 30  # every route with an id in its path, not a few
    assert failures == []
    assert caller.state() == before


def test_a_nul_in_any_query_parameter_is_refused_by_name(platform: Platform) -> None:
    caller = Caller(platform)
    before = caller.state()
    failures, checked = [], 0
    for method, path, operation in caller.operations():
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            name = parameter["name"]
            response = caller.send(method, path, params={name: NUL})
            checked += 1
            if (problem := _problem(response, name)) is not None:
                failures.append(f"{method} {path}?{name}=%00: {problem}")
    assert checked >= 15
    # A parameter no route reads is ignored, as any other would be; nothing breaks on it.
    assert caller.tenant.get("/v1/leases", params={"colour": NUL}).status_code == 200
    assert failures == []
    assert caller.state() == before


def test_a_nul_in_any_text_field_of_a_json_body_is_refused_by_name(platform: Platform) -> None:
    caller = Caller(platform)
    before = caller.state()
    schemas = caller.spec["components"]["schemas"]
    failures, checked = [], 0
    for method, path, operation in caller.operations():
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        assert (method, path) in BODIES, f"give {method} {path} a valid body in BODIES"
        ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for field, schema in schemas[ref]["properties"].items():
            if not _takes_text(schema):
                continue
            body = {**(caller.body(method, path) or {}), field: NUL}
            response = caller.send(method, path, body=body)
            checked += 1
            if (problem := _problem(response, field)) is not None:
                failures.append(f"{method} {path} {field}: {problem}")
    assert checked >= 25
    assert failures == []
    assert caller.state() == before


def test_a_nul_in_a_usage_event_is_refused_by_attribute(platform: Platform) -> None:
    caller = Caller(platform)
    before = caller.state()
    good = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/gateway/1",
        "type": "backfill.inference.tokens",
        "subject": caller.tenant_id,
        "time": "2026-01-05T00:00:00Z",
        "data": {"model": "smollm2-135m", "input_tokens": 10, "output_tokens": 100},
    }
    attributes = ("id", "source", "type", "subject")
    single = "application/cloudevents+json"
    for attribute in attributes:
        event = {**good, attribute: NUL}
        response = platform.operator.post(
            "/v1/events", content=json.dumps(event), headers={"Content-Type": single}
        )
        assert _problem(response, attribute) is None, (attribute, response.text)
    batch = [{**good, attribute: NUL} for attribute in attributes]
    response = platform.operator.post(
        "/v1/events",
        content=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 0
    rejected = response.json()["rejected"]
    assert [(r["index"], r["field"]) for r in rejected] == list(enumerate(attributes))
    assert all("NUL" in r["message"] for r in rejected)
    assert caller.state() == before


def test_the_openai_routes_answer_a_nul_in_openai_shape_not_500(platform: Platform) -> None:
    caller = Caller(platform)
    before = caller.state()
    chat = {"model": NUL, "messages": [{"role": "user", "content": NUL}], "user": NUL}
    text = {"model": NUL, "prompt": NUL}
    for response in (
        caller.tenant.post("/v1/chat/completions", json=chat),
        caller.tenant.post("/v1/chat/completions", json={**chat, "model": "tiny"}),
        caller.tenant.post("/v1/completions", json=text),
        caller.tenant.get("/v1/models", params={"after": NUL}),
        caller.tenant.get("/v1/models" + "/" + NUL_IN_URL),
    ):
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert isinstance(response.json()["error"], dict), response.text
    assert caller.state() == before


def test_a_value_the_database_refuses_is_a_422_and_nothing_of_it_is_kept(
    platform: Platform,
) -> None:
    """The last line of defence, for a value no check caught: its unit of work rolls back, and
    the answer is a 422 that quotes the database, never a 500."""
    ctx = platform.runtime.ctx
    app = FastAPI()
    errors.install(app)

    @app.post("/write")
    def write() -> None:
        with ctx.unit_of_work() as session:
            session.add(Tenant(id="tnt_refused", name="refused", created_at=datetime.now(UTC)))
            session.flush()
            reason = ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            raise DataError("INSERT INTO tenants ...", {}, reason)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/write")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "NUL" in error["message"]
    assert "refused" not in [t["name"] for t in platform.operator.get("/v1/admin/tenants").json()]

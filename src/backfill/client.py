"""A typed client of the Backfill API: what the CLI and the demo use (never the database)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        super().__init__(f"{code}: {message}" + (f" (field: {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class BackfillClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BackfillClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            message = f"cannot reach {self._http.base_url}: {exc}"
            raise ApiError(0, "unreachable", message, None) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200], "field": None}
            raise ApiError(
                response.status_code, error["code"], error["message"], error.get("field")
            )
        return response

    # tenant
    def instance_types(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/instance-types")["data"])

    def create_lease(self, *, idempotency_key: str | None = None, **body: Any) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        payload = {k: v for k, v in body.items() if v is not None}
        return dict(self._call("POST", "/v1/leases", json=payload, headers=headers))

    def leases(self, *, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        return list(self._call("GET", "/v1/leases", params=params)["data"])

    def lease(self, lease_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/leases/{lease_id}"))

    def stop_lease(self, lease_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/leases/{lease_id}"))

    def usage(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/usage"))

    def set_webhook(self, url: str) -> dict[str, Any]:
        return dict(self._call("PUT", "/v1/webhook", json={"url": url}))

    def keys(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/keys")["data"])

    def create_key(self) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/keys"))

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/keys/{key_id}"))

    # operator
    def fleet(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/admin/fleet"))

    def dashboard(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/admin/dashboard"))

    def create_tenant(self, name: str) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/admin/tenants", json={"name": name}))

    def tenants(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/admin/tenants"))

    def submit_internal(self, **body: Any) -> dict[str, Any]:
        payload = {k: v for k, v in body.items() if v is not None}
        return dict(self._call("POST", "/v1/admin/internal-jobs", json=payload))

    def internal_jobs(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/admin/internal-jobs"))

    def end_internal(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/admin/internal-jobs/{job_id}"))

    def advance(self, seconds: int) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/admin/clock/advance", json={"seconds": seconds}))

    def clock(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/admin/clock"))

    def revenue(self, *, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("since", since), ("until", until)) if v}
        return dict(self._call("GET", "/v1/admin/revenue", params=params))

    def reconciliation(self, *, since: str, until: str | None = None) -> dict[str, Any]:
        params = {"since": since, **({"until": until} if until else {})}
        return dict(self._call("GET", "/v1/admin/reconciliation", params=params))

    # billing
    def prices(self, *, product: str | None = None) -> list[dict[str, Any]]:
        params = {"product": product} if product else {}
        return list(self._call("GET", "/v1/prices", params=params)["data"])

    def set_price(self, **body: Any) -> dict[str, Any]:
        payload = {k: v for k, v in body.items() if v is not None}
        return dict(self._call("POST", "/v1/admin/prices", json=payload))

    def invoices(self, *, admin: bool = False, month: str | None = None) -> list[dict[str, Any]]:
        if not admin:
            return list(self._call("GET", "/v1/invoices")["data"])
        params = {"month": month} if month else {}
        return list(self._call("GET", "/v1/admin/invoices", params=params)["data"])

    def invoice(self, invoice_id: str, *, admin: bool = False) -> dict[str, Any]:
        prefix = "/v1/admin" if admin else "/v1"
        return dict(self._call("GET", f"{prefix}/invoices/{invoice_id}"))

    def export_invoice(self, invoice_id: str, *, format: str, admin: bool = False) -> str:
        prefix = "/v1/admin" if admin else "/v1"
        path = f"{prefix}/invoices/{invoice_id}/export"
        return self._request("GET", path, params={"format": format}).text

    def draft_invoices(self, *, month: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
        body = {"month": month, "tenant_id": tenant_id}
        payload = {k: v for k, v in body.items() if v is not None}
        return list(self._call("POST", "/v1/admin/invoices", json=payload)["data"])

    def finalize_invoice(self, invoice_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/invoices/{invoice_id}/finalize"))

    def credit_note(self, invoice_id: str, **body: Any) -> dict[str, Any]:
        payload = {k: v for k, v in body.items() if v is not None}
        return dict(
            self._call("POST", f"/v1/admin/invoices/{invoice_id}/credit-notes", json=payload)
        )

    # inference
    def create_deployment(self, **body: Any) -> dict[str, Any]:
        payload = {k: v for k, v in body.items() if v is not None}
        return dict(self._call("POST", "/v1/admin/deployments", json=payload))

    def deployments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/admin/deployments")["data"])

    def chat(self, **body: Any) -> dict[str, Any]:
        """OpenAI's chat completions, not streamed (the official ``openai`` client does more)."""
        return dict(self._call("POST", "/v1/chat/completions", json=body))

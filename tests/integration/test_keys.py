"""Tenants manage their own API keys (``/v1/keys``): only their own, never locked out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Platform

FIELDS = {"id", "prefix", "created_at", "revoked_at"}


def keys(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/v1/keys")
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "list"
    return list(response.json()["data"])


def new_key(platform: Platform, client: httpx.Client) -> tuple[httpx.Client, str]:
    """A new key of ``client``'s tenant: a client that sends it, and its id."""
    response = client.post("/v1/keys")
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "api_key"} and created["api_key"].startswith("bf_live_")
    return platform.client(created["api_key"]), str(created["id"])


def key_id_of(client: httpx.Client) -> str:
    """The id of the key ``client`` sends."""
    secret = client.headers["Authorization"].removeprefix("Bearer ")
    (found,) = [k["id"] for k in keys(client) if secret.startswith(k["prefix"])]
    return found


def test_each_tenant_lists_only_its_own_keys_and_never_a_secret(platform: Platform) -> None:
    a, a_id = platform.tenant_and_id("tenant-a")
    b, b_id = platform.tenant_and_id("tenant-b")
    _, second = new_key(platform, a)

    mine, theirs = keys(a), keys(b)
    assert len(mine) == 2 and second in {k["id"] for k in mine}
    assert len(theirs) == 1
    assert not {k["id"] for k in mine} & {k["id"] for k in theirs}
    for key in mine + theirs:
        assert set(key) == FIELDS  # no secret, no hash
        assert key["prefix"].startswith("bf_live_") and key["revoked_at"] is None
    # The same keys the operator sees for each tenant.
    for tenant, listed in ((a_id, mine), (b_id, theirs)):
        admin = platform.operator.get(f"/v1/admin/tenants/{tenant}/keys").json()
        assert sorted(k["id"] for k in admin) == sorted(k["id"] for k in listed)


def test_a_new_key_works_at_once(platform: Platform) -> None:
    a = platform.tenant("tenant-a")
    fresh, key_id = new_key(platform, a)
    assert fresh.get("/v1/usage").status_code == 200
    assert fresh.get("/v1/leases").status_code == 200
    assert key_id_of(fresh) == key_id


def test_another_tenants_key_is_not_found_and_keeps_working(platform: Platform) -> None:
    a = platform.tenant("tenant-a")
    b = platform.tenant("tenant-b")
    new_key(platform, b)  # b has a spare: only ownership may refuse it
    a_key = key_id_of(a)

    foreign = b.delete(f"/v1/keys/{a_key}")
    unknown = b.delete("/v1/keys/key_00000000000000000000")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == {
        "error": {"code": "not_found", "message": f"no key {a_key!r}", "field": None}
    }
    assert unknown.json()["error"] == {
        **foreign.json()["error"],
        "message": "no key 'key_00000000000000000000'",
    }
    assert a.get("/v1/usage").status_code == 200
    assert [k["revoked_at"] for k in keys(a)] == [None]
    assert a_key not in {k["id"] for k in keys(b)}


def test_a_revoked_key_stops_working_at_once_and_revoking_again_changes_nothing(
    platform: Platform,
) -> None:
    a = platform.tenant("tenant-a")
    second, second_id = new_key(platform, a)
    assert second.get("/v1/usage").status_code == 200
    assert second.get("/v1/models").status_code == 200  # the gateway has it cached now

    revoked = a.delete(f"/v1/keys/{second_id}")
    assert revoked.status_code == 200, revoked.text
    assert set(revoked.json()) == FIELDS and revoked.json()["revoked_at"] is not None
    assert second.get("/v1/usage").json()["error"]["code"] == "unauthorized"
    assert second.get("/v1/models").status_code == 401  # the gateway: OpenAI's error shape

    again = a.delete(f"/v1/keys/{second_id}")
    assert again.status_code == 200 and again.json() == revoked.json()
    assert a.get("/v1/usage").status_code == 200

    # The key it calls with may go too, while another is live.
    third, _ = new_key(platform, a)
    own = a.delete(f"/v1/keys/{key_id_of(a)}")
    assert own.status_code == 200, own.text
    assert a.get("/v1/usage").status_code == 401
    assert third.get("/v1/usage").status_code == 200


def test_the_last_live_key_cannot_be_revoked(platform: Platform) -> None:
    a = platform.tenant("tenant-a")
    _, second_id = new_key(platform, a)
    assert a.delete(f"/v1/keys/{second_id}").status_code == 200
    before = keys(a)

    refused = a.delete(f"/v1/keys/{key_id_of(a)}")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "conflict" and error["field"] == "key_id"
    assert "last live key" in error["message"] and "POST /v1/keys" in error["message"]
    assert keys(a) == before
    assert a.get("/v1/usage").status_code == 200


def test_the_operator_is_sent_to_its_own_routes(platform: Platform) -> None:
    a, a_id = platform.tenant_and_id("tenant-a")
    a_key = key_id_of(a)
    for response in (
        platform.operator.get("/v1/keys"),
        platform.operator.post("/v1/keys"),
        platform.operator.delete(f"/v1/keys/{a_key}"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        assert "/v1/admin/tenants/{tenant_id}/keys" in response.json()["error"]["message"]
    assert [k["id"] for k in platform.operator.get(f"/v1/admin/tenants/{a_id}/keys").json()] == [
        a_key
    ]
    assert a.get("/v1/usage").status_code == 200
    assert platform.client(None).get("/v1/keys").status_code == 401


def test_a_malformed_key_id_is_refused_plainly(platform: Platform) -> None:
    a = platform.tenant("tenant-a")
    new_key(platform, a)
    too_long = a.delete("/v1/keys/" + "k" * 5000)
    assert too_long.status_code == 422
    error = too_long.json()["error"]
    assert error["code"] == "invalid_request" and error["field"] == "key_id"
    assert "at most 40 characters" in error["message"] and len(error["message"]) < 200
    for odd, why in (
        ("ключ", "should match pattern"),
        ("key_%00", "NUL character"),
        ("key_'; DROP TABLE api_keys; --", "should match pattern"),
    ):
        response = a.delete(f"/v1/keys/{odd}")
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "key_id"
        assert why in response.json()["error"]["message"]
    assert a.delete("/v1/keys/key_nope").status_code == 404
    assert [k["revoked_at"] for k in keys(a)] == [None, None]


def _cli(platform: Platform, cwd: Path, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env.update(BACKFILL_DATA_DIR=str(cwd / "state"), BACKFILL_API_URL=platform.url)
    return subprocess.run(
        [sys.executable, "-m", "backfill.cli", "keys", *args, "--key", key],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_lists_creates_and_revokes_keys(platform: Platform, tmp_path: Path) -> None:
    created = platform.operator.post("/v1/admin/tenants", json={"name": "acme"}).json()
    key = created["api_key"]

    made = _cli(platform, tmp_path, key, "create")
    assert made.returncode == 0, made.stdout + made.stderr
    found = re.search(r"key (key_\w+)\nAPI key \(shown once\): (bf_live_\S+)", made.stdout)
    assert found is not None, made.stdout
    new_id, new_secret = found.groups()
    assert platform.client(new_secret).get("/v1/usage").status_code == 200

    listed = _cli(platform, tmp_path, key, "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "2 key(s)" in listed.stdout and new_secret not in listed.stdout
    assert re.search(rf"{new_id} .*\blive\b", listed.stdout), listed.stdout

    revoked = _cli(platform, tmp_path, key, "revoke", new_id)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert re.search(rf"{new_id} .*\brevoked\b", revoked.stdout), revoked.stdout
    assert platform.client(new_secret).get("/v1/usage").status_code == 401
    relisted = _cli(platform, tmp_path, key, "list")
    assert re.search(rf"{new_id} .*\brevoked\b", relisted.stdout), relisted.stdout

    (own,) = [
        k["id"] for k in platform.client(key).get("/v1/keys").json()["data"] if k["id"] != new_id
    ]
    last = _cli(platform, tmp_path, key, "revoke", own)
    assert last.returncode == 1 and "last live key" in last.stdout and "[conflict]" in last.stdout
    unknown = _cli(platform, tmp_path, key, "revoke", "key_nope")
    assert unknown.returncode == 1 and "not_found" in unknown.stdout

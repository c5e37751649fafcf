"""Shared fixtures: databases (SQLite and PostgreSQL), a live API server, a webhook receiver."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from backfill.runtime import Runtime, Settings
from backfill.server import BackgroundServer
from tests.inference import llama_up

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SHARED = Path(__file__).resolve().parents[2] / "shared"
OPERATOR_KEY = "bf_op_" + "t" * 40


def _postgres_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'backfill[postgres]')"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL is not reachable at 127.0.0.1:5432: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def postgres_skip_reason() -> str | None:
    return _postgres_available()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind; PostgreSQL tests skip when it cannot be reached."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'backfill.db'}"
        return
    reason = request.getfixturevalue("postgres_skip_reason")
    if reason:
        pytest.skip(reason)
    import psycopg

    name = "backfill_test_" + secrets.token_hex(6)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Platform:
    """A running control plane on a manual clock, reached over real HTTP."""

    url: str
    runtime: Runtime
    operator: httpx.Client
    clients: list[httpx.Client] = field(default_factory=list)

    def tenant(self, name: str) -> httpx.Client:
        """A new tenant, and an HTTP client that sends its key."""
        return self.tenant_and_id(name)[0]

    def tenant_and_id(self, name: str) -> tuple[httpx.Client, str]:
        """A new tenant: an HTTP client that sends its key, and its id."""
        response = self.operator.post("/v1/admin/tenants", json={"name": name})
        assert response.status_code == 201, response.text
        return self.client(response.json()["api_key"]), str(response.json()["tenant"]["id"])

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def advance(self, seconds: int) -> str:
        response = self.operator.post("/v1/admin/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text
        return str(response.json()["now"])

    def internal(self, gpus: int, region: str, accelerator: str, **extra: Any) -> dict[str, Any]:
        body = {"gpus": gpus, "region": region, "accelerator": accelerator, **extra}
        response = self.operator.post("/v1/admin/internal-jobs", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def start_platform(database_url: str, **settings: Any) -> Iterator[Platform]:
    with tempfile.TemporaryDirectory() as state:  # its own replicas' logs and usage spool
        config = Settings(
            database_url=database_url,
            clock="manual",
            operator_key=OPERATOR_KEY,
            price_interval=settings.pop("price_interval", 3600.0),
            data_dir=settings.pop("data_dir", Path(state)),
            **settings,
        )
        yield from serve(config)


def serve(settings: Settings) -> Iterator[Platform]:
    """A control plane with ``settings`` behind a real HTTP server, until the caller is done."""
    runtime = Runtime(settings)
    runtime.start()  # the ticker (a manual clock has none)
    server = BackgroundServer(runtime)
    url = server.start()
    operator = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=30
    )
    platform = Platform(url=url, runtime=runtime, operator=operator)
    try:
        yield platform
    finally:
        for client in [operator, *platform.clients]:
            client.close()
        server.stop()
        runtime.close()


@pytest.fixture
def platform(database_url: str) -> Iterator[Platform]:
    yield from start_platform(database_url)


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server that records what is POSTed to it."""

    def __init__(self, *, failures: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self.failures = failures
        received = self.deliveries
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                received.append(Delivery(headers=dict(self.headers.items()), body=body))
                failing = receiver.failures > 0
                receiver.failures -= 1
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def require(missing: str | None) -> None:
    """Go on when nothing is ``missing``; else skip saying why, or under CI fail: what CI's
    tests need, its run must set up itself."""
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def llama_engine() -> None:
    """llama.cpp's server and the small model, installed once (``tests/inference.py``)."""
    require(llama_up())

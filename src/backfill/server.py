"""Running the API with uvicorn: in the foreground (``serve``) or on a thread (``demo``, tests)."""

from __future__ import annotations

import threading
import time

import uvicorn

from backfill.api.app import create_asgi
from backfill.runtime import Runtime


class BackgroundServer:
    """The API of ``runtime`` served on a thread until ``stop``."""

    def __init__(self, runtime: Runtime, *, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            create_asgi(runtime), host=host, port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="backfill-api", daemon=True)

    def start(self, timeout: float = 15.0) -> str:
        """Start serving; returns the base URL once the socket listens."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (is the port taken?)")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

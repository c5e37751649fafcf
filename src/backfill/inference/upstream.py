"""HTTP/1.1 from the gateway to its replicas, over connections kept open between requests.

Every request a tenant sends crosses this once, so its cost is the tenant's: aiohttp's client
took 0.35 to 0.55 ms more per request than this one against the same llama-server (one event
loop, requests interleaved, ``bench/gateway.py``'s one-token request), close to half of the
gateway's whole allowance of 1 ms. What a replica needs is small — POST a JSON body to a
server we started, read a JSON answer or an event stream — so this is only the framing and the
pool; the parsing is ``httptools`` (llhttp, the parser uvicorn serves with).

A connection is reused while the replica keeps it alive, and dropped before the replica's own
keep-alive timeout (llama-server closes connections idle 5 s). A request sent on a reused
connection that the replica closed without answering (it had just timed it out) is sent once
more on a new connection: the replica never read it, so nothing was generated nor billed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools

IDLE_SECONDS = 4.0
"""A kept-alive connection idle longer than this is closed rather than reused (llama-server and
vLLM's uvicorn both close theirs after 5 s)."""
MAX_IDLE = 32
"""Kept-alive connections per replica, at most (each holds one of llama-server's HTTP threads)."""
PAUSE_BYTES = 1 << 20
"""Stop reading from the replica while this much of its answer waits for the tenant to take it."""


class UpstreamError(Exception):
    """The replica could not be reached, closed the connection, or sent no valid HTTP."""

    def __init__(self, message: str, *, closed: bool = False) -> None:
        super().__init__(message)
        self.closed = closed
        """The replica closed the connection (not a timeout, not bad HTTP)."""


class Upstream:
    """A pool of kept-alive connections per replica; made and used in one event loop."""

    def __init__(self, *, connect_timeout: float = 2.0, read_timeout: float = 300.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}

    async def post(self, host: str, port: int, path: str, body: bytes, key: str = "") -> Answer:
        """Send ``body`` as JSON (with ``key`` as a bearer token, if any); returns once the
        status line and headers have arrived."""
        authorization = f"Authorization: Bearer {key}\r\n" if key else ""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{authorization}Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        while True:
            connection = self._take(host, port)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(host, port)
            answer = Answer(self, connection, self.read_timeout)
            connection.start(answer, head + body)
            try:
                await answer.wait_headers()
            except UpstreamError:
                if reused and answer.closed_unread:  # closed while idle: never read, send again
                    continue
                raise
            return answer

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _take(self, host: str, port: int) -> _Connection | None:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def _give_back(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.address, deque())
        if len(idle) >= MAX_IDLE:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection((host, port)), host, port),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc!r}") from None
        return connection


class Answer:
    """One response: its status, then its body whole (``read``) or line by line (``lines``).
    ``release`` gives the connection back when the body was read to its end, else closes it
    (the replica sees the tenant go and stops generating)."""

    def __init__(self, pool: Upstream, connection: _Connection, timeout: float) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self.status = 0
        self.got_bytes = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self._released = False

    # -- fed by the connection ----------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_headers(self, status: int) -> None:
        self.status = status
        self.headers_done = True
        self._wake()

    def on_body(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > PAUSE_BYTES:
            self._connection.pause()
        self._wake()

    def on_complete(self, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._wake()

    def on_error(self, error: UpstreamError) -> None:
        if self._error is None and not self.complete:
            self._error = error
        self._wake()

    @property
    def closed_unread(self) -> bool:
        """The replica closed the connection before a byte of its answer: it never read it."""
        return self._error is not None and self._error.closed and not self.got_bytes

    # -- read by the gateway ------------------------------------------------------------------

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._timeout, self._expire)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _expire(self) -> None:
        self.on_error(UpstreamError(f"no answer from the replica in {self._timeout:g} s"))
        self._connection.close()

    async def wait_headers(self) -> None:
        while not self.headers_done:
            await self._wait()

    def _take_chunks(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._connection.resume()
        return data

    async def read(self) -> bytes:
        """The whole body."""
        while not self.complete:
            await self._wait()
        return self._take_chunks()

    async def lines(self) -> AsyncIterator[bytes]:
        """The body's lines, each with its line end, as they arrive (an event stream)."""
        pending = b""
        while True:
            if self._chunks:
                pending += self._take_chunks()
                *whole, pending = pending.split(b"\n")
                for line in whole:
                    yield line + b"\n"
            elif self.complete:
                if pending:
                    yield pending
                return
            else:
                await self._wait()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        connection = self._connection
        connection.answer = None
        if self.complete and self.keep_alive and connection.usable:
            self._pool._give_back(connection)
        else:
            connection.close()


class _Connection(asyncio.Protocol):
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.answer: Answer | None = None
        self.usable = True
        self.idle_since = 0.0
        self._parser: Any = None
        self._paused = False

    def start(self, answer: Answer, request: bytes) -> None:
        assert self.transport is not None
        self.answer = answer
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(request)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and self.usable:
            self._paused = False
            self.transport.resume_reading()

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None or self._parser is None:  # nothing asked: a replica talking out of turn
            self.close()
            return
        answer.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            answer.on_error(UpstreamError(f"the replica sent invalid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.answer is not None:
            self.answer.on_error(
                UpstreamError(f"the replica closed the connection ({exc!r})", closed=True)
            )

    # -- httptools ------------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self.answer is not None:
            self.answer.on_headers(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.answer is not None:
            self.answer.on_body(body)

    def on_message_complete(self) -> None:
        if self.answer is not None:
            self.answer.on_complete(self._parser.should_keep_alive())

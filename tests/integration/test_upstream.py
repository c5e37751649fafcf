"""The gateway's HTTP/1.1 client against servers that misbehave on purpose.

The real replica (llama-server) is exercised by ``test_gateway.py``; here a small asyncio server
plays the replica's edge cases that llama-server cannot be made to show on demand: a kept-alive
connection closed while idle, ``Connection: close``, bytes that are not HTTP, silence, an event
stream cut mid-line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from backfill.inference.upstream import Upstream, UpstreamError

Reader, Writer = asyncio.StreamReader, asyncio.StreamWriter
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Replica"], Awaitable[None]]


class Replica:
    """A scripted server: counts connections and requests, runs ``handler`` per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Replica:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        body = await reader.readexactly(length)
        self.requests.append(body)
        return body


def answer(body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{headers}\r\n"
    ).encode() + body


async def echo_forever(reader: Reader, writer: Writer, r: Replica):
    while (body := await r.read_request(reader)) is not None:
        writer.write(answer(body))


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def test_a_connection_is_kept_alive_between_requests() -> None:
    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(echo_forever) as replica:
            for n in range(3):
                got = await upstream.post("127.0.0.1", replica.port, "/v1/x", b'{"n":%d}' % n)
                assert (got.status, await got.read()) == (200, b'{"n":%d}' % n)
                got.release()
            assert replica.connections == 1
        await upstream.close()

    run(scenario())


def test_a_kept_alive_connection_the_replica_closed_while_idle_is_not_used() -> None:
    async def one_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Replica
    ):
        body = await r.read_request(reader)
        assert body is not None
        writer.write(answer(body))  # kept alive, says the answer; then closed without a word
        await writer.drain()

    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(one_then_close) as replica:
            first = await upstream.post("127.0.0.1", replica.port, "/", b"1")
            assert await first.read() == b"1"
            first.release()
            await asyncio.sleep(0.05)  # the replica closes the idle connection
            second = await upstream.post("127.0.0.1", replica.port, "/", b"2")
            assert await second.read() == b"2"
            second.release()
            assert replica.connections == 2
            assert replica.requests == [b"1", b"2"]  # each once
        await upstream.close()

    run(scenario())


def test_a_request_that_meets_the_replica_closing_an_idle_connection_is_sent_again() -> None:
    async def close_as_the_next_arrives(reader: Reader, writer: Writer, r: Replica):
        body = await r.read_request(reader)
        assert body is not None
        writer.write(answer(body))  # kept alive, says the answer ...
        await writer.drain()
        await reader.read(1)  # ... but its idle timer fires just as the next request arrives

    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(close_as_the_next_arrives) as replica:
            first = await upstream.post("127.0.0.1", replica.port, "/", b"1")
            assert await first.read() == b"1"
            first.release()
            second = await upstream.post("127.0.0.1", replica.port, "/", b"2")
            assert await second.read() == b"2"
            second.release()
            assert replica.connections == 2
            assert replica.requests == [b"1", b"2"]
        await upstream.close()

    run(scenario())


def test_a_reused_connection_that_times_out_is_not_sent_again() -> None:
    async def answer_once_then_silence(reader: Reader, writer: Writer, r: Replica):
        body = await r.read_request(reader)
        assert body is not None
        writer.write(answer(body))
        await r.read_request(reader)  # read, and never answered: it may be working on it
        await asyncio.sleep(5)

    async def scenario() -> None:
        upstream = Upstream(read_timeout=0.2)
        async with Replica(answer_once_then_silence) as replica:
            first = await upstream.post("127.0.0.1", replica.port, "/", b"1")
            assert await first.read() == b"1"
            first.release()
            with pytest.raises(UpstreamError, match="no answer"):
                await upstream.post("127.0.0.1", replica.port, "/", b"2")
            assert replica.requests == [b"1", b"2"]  # not a second time
            assert replica.connections == 1
        await upstream.close()

    run(scenario())


def test_connection_close_is_honoured() -> None:
    async def closing(reader: Reader, writer: Writer, r: Replica):
        while (body := await r.read_request(reader)) is not None:
            writer.write(answer(body, "Connection: close"))

    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(closing) as replica:
            for n in range(2):
                got = await upstream.post("127.0.0.1", replica.port, "/", b"%d" % n)
                assert await got.read() == b"%d" % n
                got.release()
            assert replica.connections == 2
        await upstream.close()

    run(scenario())


def test_a_fresh_connection_closed_before_answering_is_an_error_not_a_retry() -> None:
    async def hang_up(reader: Reader, writer: Writer, r: Replica):
        await r.read_request(reader)  # read it, then die

    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(hang_up) as replica:
            with pytest.raises(UpstreamError, match="closed the connection"):
                await upstream.post("127.0.0.1", replica.port, "/", b"x")
            assert replica.requests == [b"x"]  # the replica may have acted on it: not resent
        await upstream.close()

    run(scenario())


def test_no_server_bytes_that_are_not_http_and_silence_are_errors() -> None:
    async def garbage(reader: Reader, writer: Writer, r: Replica):
        await r.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def silent(reader: Reader, writer: Writer, r: Replica):
        await r.read_request(reader)
        await asyncio.sleep(5)

    async def scenario() -> None:
        upstream = Upstream(read_timeout=0.2)
        async with Replica(garbage) as replica:
            port = replica.port
            with pytest.raises(UpstreamError, match="invalid HTTP"):
                await upstream.post("127.0.0.1", port, "/", b"x")
        with pytest.raises(UpstreamError, match="cannot connect"):
            await upstream.post("127.0.0.1", port, "/", b"x")  # nobody listens there now
        async with Replica(silent) as replica:
            with pytest.raises(UpstreamError, match=r"no answer from the replica in 0\.2 s"):
                await upstream.post("127.0.0.1", replica.port, "/", b"x")
        await upstream.close()

    run(scenario())


def test_an_event_stream_comes_line_by_line_however_it_is_cut() -> None:
    events = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'

    async def chunked(reader: Reader, writer: Writer, r: Replica):
        while await r.read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for start in range(0, len(events), 7):  # cut mid-line, mid-event
                piece = events[start : start + 7]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.001)
            writer.write(b"0\r\n\r\n")

    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(chunked) as replica:
            got = await upstream.post("127.0.0.1", replica.port, "/", b"{}")
            lines = [line async for line in got.lines()]
            got.release()
            assert b"".join(lines) == events
            assert all(line.endswith(b"\n") for line in lines)
            assert [line for line in lines if line.strip()] == [
                b'data: {"a": 1}\n',
                b'data: {"b": 2}\n',
                b"data: [DONE]\n",
            ]
            again = await upstream.post("127.0.0.1", replica.port, "/", b"{}")  # kept alive
            assert b"".join([line async for line in again.lines()]) == events
            again.release()
            assert replica.connections == 1
        await upstream.close()

    run(scenario())


def test_a_stream_released_before_its_end_closes_the_connection() -> None:
    closed = asyncio.Event()

    async def endless(reader: Reader, writer: Writer, r: Replica):
        await r.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            while True:
                writer.write(b"6\r\ndata:\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            closed.set()  # the replica sees the tenant go: it stops generating

    async def scenario() -> None:
        upstream = Upstream()
        async with Replica(endless) as replica:
            got = await upstream.post("127.0.0.1", replica.port, "/", b"{}")
            stream = got.lines()
            assert await anext(stream) == b"data:\n"
            await stream.aclose()
            got.release()
            await asyncio.wait_for(closed.wait(), 5)
            assert not upstream._idle.get(("127.0.0.1", replica.port))
        await upstream.close()

    run(scenario())

"""Kafka responses received straight into their final ``bytes`` (the worker's feed consumer).

aiokafka reads a connection through an ``asyncio.StreamReader``: each chunk the socket gives (at most
256 KiB) is copied onto the reader's buffer (``bytearray.extend``), and ``readexactly(size)`` copies the
response out of it again. A fetch response of the feed is megabytes of frames, so both copies are paid on
every byte of the feed, and with fresh pages each time; measured in the worker (6.1 M events, cProfile),
``extend`` and ``readexactly`` took ≈ 1 s of 4, more than the decoder.

Here the connection's protocol is an ``asyncio.BufferedProtocol``: the transport calls ``recv_into`` the
buffer we give. A response's 4-byte size and its first 64 KiB are read through a small staging buffer (a
response that small is then copied into its ``bytes``); once they have come, a larger one gets a new
``bytes`` object of its size (``_fastio.writable_bytes``: allocated only then, so a peer that is not Kafka
cannot make it allocate what four stray bytes announce), and the rest goes into it directly while at least
a staging buffer's worth is still to come, else through the staging buffer. aiokafka then gets the very
same object (``_handle_frame`` wraps it in ``io.BytesIO``, which shares a ``bytes``). A size prefix beyond
:data:`MAX_RESPONSE_BYTES` is an :class:`OutOfStep` error (a ``ConnectionError``: aiokafka closes the
connection quietly, as after a lost one).

:class:`FrameReader` stands in for the ``StreamReader`` (the methods aiokafka, ``StreamReaderProtocol`` and
``StreamWriter`` call), :class:`FrameConnection` is aiokafka's connection with it, and :func:`use_for`
makes a consumer's (or producer's) client open its connections to brokers as :class:`FrameConnection`
(its bootstrap connection, used for metadata only, stays aiokafka's). Everything else — requests, SASL,
SSL (``asyncio``'s SSL transport supports buffered protocols), errors and closing — is aiokafka's own code.

It replaces aiokafka's ``AIOKafkaConnection.connect`` (the rest of the connection is inherited), so it is
used only with the aiokafka versions it was written and tested against (:data:`AIOKAFKA_VERSIONS`); with
another one, or without the compiled ``_fastio``, :func:`use_for` logs why and leaves the client as it is.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from typing import Any

import aiokafka
import aiokafka.client
from aiokafka.conn import AIOKafkaConnection, AIOKafkaProtocol

try:
    from surveil.stream import _fastio
except ImportError:  # not built (no C compiler at install): aiokafka's reader is used
    _fastio = None

log = logging.getLogger(__name__)

#: the aiokafka versions whose ``AIOKafkaConnection.connect`` :meth:`FrameConnection.connect` follows
AIOKAFKA_VERSIONS = ("0.14.",)
#: staging buffer: the size prefixes, small responses and the last part of a large one go through it
STAGE_BYTES = 64 << 10
#: a larger size prefix is not a Kafka response (the worker asks for at most 64 MiB at a time; a record
#: batch larger than that comes whole): the peer does not speak Kafka, and the connection is closed. The
#: first bytes of a TLS record ("\x15\x03\x03", "\x16\x03\x03": a plaintext client on a TLS port) read as
#: 352 and 369 MB, those of an HTTP reply as 1.2 GB
MAX_RESPONSE_BYTES = 256 << 20


#: reading is paused while more whole responses than this wait to be read, and resumed when half of them
#: are left (asyncio's StreamReader pauses past 128 KiB; aiokafka keeps few requests in flight, so this is
#: only a bound). ``_ready`` holds two pieces a response: its size prefix and its body
MAX_WAITING = 16


class OutOfStep(ConnectionError):
    """The bytes received are not a Kafka response (aiokafka closes the connection, as on a lost one)."""


class FrameReader(asyncio.StreamReader):
    """Assembles a connection's size-prefixed responses (see the module docstring). ``readexactly`` gives
    them back in the two reads aiokafka's reader task makes: the 4-byte size, then the whole body. A
    ``StreamReader`` (``StreamWriter`` requires one) whose own buffer stays empty: the methods aiokafka,
    ``StreamReaderProtocol`` and ``StreamWriter`` call are replaced."""

    def __init__(self) -> None:
        super().__init__()
        self._ready: collections.deque[bytes] = collections.deque()  # size prefix, body, size prefix, ...
        self._waiter: asyncio.Future | None = None
        self._eof = False
        self._exception: BaseException | None = None
        self._transport: Any = None
        self._stage = memoryview(bytearray(STAGE_BYTES))
        self._head = bytearray()  # the size prefix read so far
        self._size = -1  # the size of the response being received (-1: its size prefix is not whole yet)
        self._start = bytearray()  # its first bytes, until STAGE_BYTES of it (or all) have come
        self._body: bytes | None = None  # then the response itself, and a writable view of it
        self._view: memoryview | None = None
        self._filled = 0
        self._direct = False  # the last buffer given was the body's (not the staging buffer)

    # -- what StreamReaderProtocol, StreamWriter and aiokafka's connection call ------------------------
    def set_transport(self, transport: Any) -> None:
        self._transport = transport

    def exception(self) -> BaseException | None:
        return self._exception

    def set_exception(self, exc: BaseException) -> None:
        self._exception = exc
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def at_eof(self) -> bool:
        return self._eof and not self._ready

    def feed_data(self, data: bytes) -> None:  # a transport that is not buffered (not expected)
        self._take(memoryview(data))

    async def readexactly(self, n: int) -> bytes:
        while not self._ready:
            if self._exception is not None:
                raise self._exception
            if self._eof:
                raise asyncio.IncompleteReadError(b"", n)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._ready.popleft()
        if self._paused and len(self._ready) <= MAX_WAITING and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        if len(data) != n:  # aiokafka reads a size prefix, then exactly that many bytes
            raise RuntimeError(f"FrameReader: a read of {n} bytes, but the next piece has {len(data)}")
        return data

    # -- the buffered protocol's side -------------------------------------------------------------
    def get_buffer(self) -> memoryview:
        if self._view is not None and self._size - self._filled >= STAGE_BYTES:
            self._direct = True
            return self._view[self._filled:]
        self._direct = False
        return self._stage

    def buffer_updated(self, n: int) -> None:
        if self._direct:
            self._filled += n
            if self._filled == self._size:
                self._complete(self._body)
        else:
            self._take(self._stage[:n])

    # -- assembling ---------------------------------------------------------------------------------
    def _take(self, data: memoryview) -> None:
        if self._exception is not None:  # failed (out of step): the transport is closing, nothing more is read
            return
        pos, end = 0, len(data)
        while pos < end:
            if self._size < 0:  # the size prefix
                k = min(4 - len(self._head), end - pos)
                self._head += data[pos:pos + k]
                pos += k
                if len(self._head) == 4:
                    size = int.from_bytes(self._head, "big", signed=True)
                    if not 0 <= size <= MAX_RESPONSE_BYTES:
                        self._fail(OutOfStep(f"a response of size={size} (bytes {bytes(self._head)!r}): not Kafka "
                                             f"(expected 0..{MAX_RESPONSE_BYTES}; a wrong port or protocol?)"))
                        return
                    self._size = size
                    if size == 0:
                        self._complete(b"")
            elif self._view is None:  # the first bytes, kept aside: the size is only allocated once they came
                k = min(self._size - len(self._start), STAGE_BYTES - len(self._start), end - pos)
                self._start += data[pos:pos + k]
                pos += k
                if len(self._start) == self._size:
                    self._complete(bytes(self._start))
                elif len(self._start) == STAGE_BYTES:
                    self._body, self._view = _fastio.writable_bytes(self._size)
                    self._view[:STAGE_BYTES] = self._start
                    self._filled = STAGE_BYTES
            else:
                k = min(self._size - self._filled, end - pos)
                self._view[self._filled:self._filled + k] = data[pos:pos + k]
                self._filled += k
                pos += k
                if self._filled == self._size:
                    self._complete(self._body)

    def _complete(self, body: bytes) -> None:
        if self._view is not None:
            self._view.release()  # the body is whole: nothing writes to it any more
        self._ready.append(bytes(self._head))
        self._ready.append(body)
        self._head.clear()
        self._start.clear()
        self._size = -1
        self._body = self._view = None
        if not self._paused and len(self._ready) > 2 * MAX_WAITING and self._transport is not None:
            self._paused = True  # (pieces: a size prefix and a body per response)
            self._transport.pause_reading()
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


class _Protocol(AIOKafkaProtocol, asyncio.BufferedProtocol):
    """aiokafka's protocol (closing, flow control for the writer), receiving into :class:`FrameReader`."""

    def __init__(self, closed_fut: asyncio.Future, reader: FrameReader, *, loop) -> None:
        super().__init__(closed_fut, reader, loop=loop)
        self._frames = reader

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._frames.buffer_updated(nbytes)


class FrameConnection(AIOKafkaConnection):
    """aiokafka's connection, its responses received by :class:`FrameReader`."""

    async def connect(self):  # aiokafka 0.14's connect, with FrameReader and _Protocol
        loop = self._loop
        self._closed_fut = loop.create_future()
        if self._security_protocol in ["PLAINTEXT", "SASL_PLAINTEXT"]:
            ssl = None
        else:
            assert self._security_protocol in ["SSL", "SASL_SSL"]
            assert self._ssl_context is not None
            ssl = self._ssl_context
        reader = FrameReader()
        protocol = _Protocol(self._closed_fut, reader, loop=loop)
        async with asyncio.timeout(self._request_timeout):
            transport, _ = await loop.create_connection(lambda: protocol, self.host, self.port, ssl=ssl)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._reader, self._writer, self._protocol = reader, writer, protocol
        self._read_task = self._create_reader_task()
        if self._max_idle_ms is not None:
            self._idle_handle = loop.call_soon(self._idle_check, weakref.ref(self))
        try:
            await self._do_version_lookup()
            if self._security_protocol in ["SASL_SSL", "SASL_PLAINTEXT"]:
                await self._do_sasl_handshake()
        except:  # noqa: E722 - as aiokafka: close on anything, then re-raise
            self.close()
            raise
        return reader, writer


_clients: weakref.WeakSet = weakref.WeakSet()
_stock_create_conn = aiokafka.client.create_conn


async def _create_conn(host, port, **kw):
    """aiokafka.client's ``create_conn``: a :class:`FrameConnection` for the clients of :func:`use_for`."""
    on_close = kw.get("on_close")
    if getattr(on_close, "__self__", None) not in _clients:
        return await _stock_create_conn(host, port, **kw)
    conn = FrameConnection(host, port, **kw)
    await conn.connect()
    return conn


def available() -> str | None:
    """None if :func:`use_for` can take effect, else why not."""
    if _fastio is None:
        return "surveil.stream._fastio is not built (no C compiler at install)"
    if not aiokafka.__version__.startswith(AIOKAFKA_VERSIONS):
        return f"aiokafka {aiokafka.__version__} is not one of {AIOKAFKA_VERSIONS}"
    return None


def use_for(client_owner: Any) -> bool:
    """Make an ``AIOKafkaConsumer``'s (or producer's) client, not started yet, receive its brokers'
    responses with :class:`FrameReader`. False (logged) when it is not available here."""
    why = available()
    if why is not None:
        log.warning("Kafka responses are read with aiokafka's own reader: %s", why)
        return False
    if aiokafka.client.create_conn is not _create_conn:
        aiokafka.client.create_conn = _create_conn
    _clients.add(client_owner._client)
    return True

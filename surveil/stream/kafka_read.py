"""Kafka responses received straight into their final ``bytes`` (the worker's feed consumer).

aiokafka reads a connection through an ``asyncio.StreamReader``: each chunk the socket gives (at most
256 KiB) is copied onto the reader's buffer (``bytearray.extend``), and ``readexactly(size)`` copies the
response out of it again. A fetch response of the feed is megabytes of frames, so both copies are paid on
every byte of the feed, and with fresh pages each time; measured in the worker (6.1 M events, cProfile),
``extend`` and ``readexactly`` took ≈ 1 s of 4, more than the decoder.

Here the connection's protocol is an ``asyncio.BufferedProtocol``: the transport calls ``recv_into`` the
buffer we give. A response's 4-byte size is read through a small staging buffer; its body goes into a new
``bytes`` object of that size (``_fastio.writable_bytes``), directly while at least a staging buffer's worth
of it is still to come, else through the staging buffer. aiokafka then gets the very same object
(``_handle_frame`` wraps it in ``io.BytesIO``, which shares a ``bytes``).

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
        self._body: bytes | None = None  # the response being received, and a writable view of it
        self._view: memoryview | None = None
        self._size = 0
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
                self._complete()
        else:
            self._take(self._stage[:n])

    # -- assembling ---------------------------------------------------------------------------------
    def _take(self, data: memoryview) -> None:
        if self._exception is not None:  # failed (out of step): the transport is closing, nothing more is read
            return
        pos, end = 0, len(data)
        while pos < end:
            if self._view is None:
                k = min(4 - len(self._head), end - pos)
                self._head += data[pos:pos + k]
                pos += k
                if len(self._head) == 4:
                    size = int.from_bytes(self._head, "big", signed=True)
                    if size < 0:
                        self._fail(ValueError(f"a Kafka response of size={size}: the connection is out of step"))
                        return
                    self._body, self._view = _fastio.writable_bytes(size)
                    self._size, self._filled = size, 0
                    if size == 0:
                        self._complete()
            else:
                k = min(self._size - self._filled, end - pos)
                self._view[self._filled:self._filled + k] = data[pos:pos + k]
                self._filled += k
                pos += k
                if self._filled == self._size:
                    self._complete()

    def _complete(self) -> None:
        self._view.release()  # the body is whole: nothing writes to it any more
        self._ready.append(bytes(self._head))
        self._ready.append(self._body)
        self._head.clear()
        self._body = self._view = None
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

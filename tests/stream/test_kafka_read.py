"""Kafka responses received straight into their final bytes (surveil.stream.kafka_read).

Unit tests drive FrameReader as the transport does (get_buffer, recv_into it, buffer_updated) with the
stream cut anywhere; the Kafka tests read a real broker's records through FrameConnection and compare them
with aiokafka's own reader, and check that a worker's feed consumer uses it."""

import asyncio
import logging
import os
import random
import struct

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafkatools import settings

from surveil.stream import kafka_read
from surveil.stream.kafka_read import STAGE_BYTES, FrameConnection, FrameReader
from surveil.stream.worker import Worker

SIZES = [0, 1, 3, 4, 5, 100, STAGE_BYTES - 1, STAGE_BYTES, STAGE_BYTES + 1, 2 * STAGE_BYTES + 7, 300_000]


def _stream(bodies):
    return b"".join(struct.pack(">i", len(b)) + b for b in bodies)


def _feed(r: FrameReader, data: bytes, rnd: random.Random, cuts=(1, 3, 4, 5, 1000, STAGE_BYTES, 1 << 20)):
    """Give ``data`` to the reader as a transport would: into the buffer it asks for, at most that long and
    at most a random cut. Returns how many reads went straight into a response's body."""
    pos = direct = 0
    while pos < len(data):
        buf = r.get_buffer()
        assert len(buf) > 0
        if buf.obj is not r._stage.obj:
            direct += 1
        n = min(len(buf), rnd.choice(cuts), len(data) - pos)
        buf[:n] = data[pos:pos + n]
        pos += n
        r.buffer_updated(n)
    return direct


async def _read_all(r: FrameReader, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        (size,) = struct.unpack(">i", await r.readexactly(4))
        out.append(await r.readexactly(size))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_responses_cut_anywhere_come_back_whole(seed):
    rnd = random.Random(seed)
    bodies = [rnd.randbytes(rnd.choice(SIZES)) for _ in range(40)]

    async def main():
        r = FrameReader()
        return r, _feed(r, _stream(bodies), rnd), await _read_all(r, len(bodies))

    r, direct, got = asyncio.run(main())
    assert got == bodies
    assert all(type(b) is bytes for b in got)
    assert direct > 0  # the large bodies were (partly) received in place, not through the staging buffer
    assert not r._ready and r._view is None and not r._head


def test_a_waiting_reader_gets_the_response_when_it_arrives():
    body = os.urandom(200_000)
    data = _stream([body])

    async def main():
        r = FrameReader()
        waiting = asyncio.ensure_future(_read_all(r, 1))
        await asyncio.sleep(0)
        _feed(r, data[:1000], random.Random(1))
        await asyncio.sleep(0)
        assert not waiting.done()  # half a response is not given out
        _feed(r, data[1000:], random.Random(2))
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(main()) == [body]


def test_end_of_stream_and_errors():
    async def main():
        # a whole response before the end is still read; then the end is an incomplete read
        r = FrameReader()
        _feed(r, _stream([b"abc"]) + struct.pack(">i", 10) + b"12", random.Random(3))
        r.feed_eof()
        assert not r.at_eof()
        assert await _read_all(r, 1) == [b"abc"]
        assert r.at_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await r.readexactly(4)
        # an error (connection lost) wakes a waiting read
        r = FrameReader()
        waiting = asyncio.ensure_future(r.readexactly(4))
        await asyncio.sleep(0)
        r.set_exception(ConnectionResetError("lost"))
        with pytest.raises(ConnectionResetError):
            await waiting
        assert isinstance(r.exception(), ConnectionResetError)

    asyncio.run(main())


def test_a_negative_size_fails_the_connection():
    closed = []

    class Transport:
        def close(self):
            closed.append(True)

    async def main():
        r = FrameReader()
        r.set_transport(Transport())
        _feed(r, struct.pack(">i", -5) + b"rest", random.Random(4))
        with pytest.raises(ValueError, match="size=-5"):
            await r.readexactly(4)

    asyncio.run(main())
    assert closed == [True]


def test_a_read_of_the_wrong_length_is_an_error():
    async def main():
        r = FrameReader()
        _feed(r, _stream([b"abcdef"]), random.Random(5))
        await r.readexactly(4)
        with pytest.raises(RuntimeError, match="a read of 5 bytes, but the next piece has 6"):
            await r.readexactly(5)

    asyncio.run(main())


@pytest.mark.parametrize("why", ["aiokafka 0.99.0 is not one of", "surveil.stream._fastio is not built"])
def test_not_used_with_another_aiokafka_or_without_the_compiled_part(monkeypatch, caplog, why):
    if why.startswith("aiokafka"):
        monkeypatch.setattr(kafka_read.aiokafka, "__version__", "0.99.0")
    else:
        monkeypatch.setattr(kafka_read, "_fastio", None)

    async def main():
        c = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        with caplog.at_level(logging.WARNING, logger="surveil.stream.kafka_read"):
            return c, kafka_read.use_for(c)

    c, used = asyncio.run(main())
    assert used is False
    assert why in caplog.text
    assert c._client not in kafka_read._clients


# --------------------------------------------------------------------------------------------------
# on a real broker


@pytest.mark.kafka
def test_records_equal_aiokafkas_own_reader(kafka_bootstrap):
    asyncio.run(asyncio.wait_for(_records_equal(kafka_bootstrap), 120))


async def _records_equal(bootstrap):
    topic = f"kr{os.urandom(4).hex()}"
    rnd = random.Random(7)
    values = [rnd.randbytes(rnd.choice([0, 1, 10, 70_000, 300_000, 900_000])) for _ in range(60)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # two partitions: a fetch response carries both
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 << 20, linger_ms=20)
    await p.start()
    try:
        for i, v in enumerate(values):
            await p.send(topic, v, key=str(i).encode(), partition=i % 2)
        await p.flush()
    finally:
        await p.stop()

    async def read(fast: bool):
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, max_partition_fetch_bytes=4 << 20, fetch_max_bytes=8 << 20)
        if fast:
            assert kafka_read.use_for(c)
        await c.start()
        got = {}
        try:
            while len(got) < len(values):
                for msgs in (await asyncio.wait_for(c.getmany(timeout_ms=500), 30)).values():
                    got.update((int(m.key), m.value) for m in msgs)
            kinds = {type(conn) for conn in c._client._conns.values()}
        finally:
            await c.stop()
        return [got[i] for i in range(len(values))], kinds

    fast, fast_kinds = await read(True)
    stock, stock_kinds = await read(False)
    assert fast == stock == values
    assert FrameConnection in fast_kinds  # the fetches went through it
    assert FrameConnection not in stock_kinds  # another client of the process is not changed


@pytest.mark.kafka
@pytest.mark.parametrize("in_place", [True, False])
def test_the_worker_feed_consumer_reads_with_it(kafka_bootstrap, in_place):
    async def main():
        w = Worker(settings(kafka_bootstrap, fetch_in_place=in_place))
        task = asyncio.create_task(w.run())
        try:
            await asyncio.wait_for(w.ready.wait(), 60)
            return {type(c) for c in w.consumer._client._conns.values()}, {
                type(c) for c in w.producer.client._conns.values()}
        finally:
            w.stop.set()
            await asyncio.wait_for(task, 30)

    consumer_kinds, producer_kinds = asyncio.run(main())
    assert (FrameConnection in consumer_kinds) is in_place  # SURVEIL_FETCH_IN_PLACE=off: aiokafka's reader
    assert consumer_kinds and FrameConnection not in producer_kinds


def test_responses_over_tls_come_back_whole(tmp_path):
    """asyncio's TLS transport drives a buffered protocol its own way (it decrypts into the buffer the
    protocol gives): responses from a TLS server, read through FrameReader and _Protocol as
    FrameConnection connects with SSL or SASL_SSL, come back whole."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    rnd = random.Random(9)
    bodies = [rnd.randbytes(rnd.choice(SIZES + [1_000_000])) for _ in range(30)]

    async def main():
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)

        async def serve(reader, writer):
            writer.write(_stream(bodies))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context(cafile=str(cert))
        loop = asyncio.get_running_loop()
        reader = FrameReader()
        gave = []  # every buffer the transport was given
        real_get_buffer = reader.get_buffer

        def get_buffer():
            gave.append(real_get_buffer())
            return gave[-1]

        reader.get_buffer = get_buffer
        protocol = kafka_read._Protocol(loop.create_future(), reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port, ssl=client_ctx,
                                                    server_hostname="localhost")
        try:
            got = await asyncio.wait_for(_read_all(reader, len(bodies)), 30)
        finally:
            transport.close()
            server.close()
            await server.wait_closed()
        return got, sum(b.obj is not reader._stage.obj for b in gave)

    got, direct = asyncio.run(main())
    assert got == bodies
    assert direct > 0  # large bodies were decrypted straight into their bytes

"""Kafka responses received straight into their final bytes (surveil.stream.kafka_read).

Unit tests drive FrameReader as the transport does (get_buffer, recv_into it, buffer_updated) with the
stream cut anywhere; the Kafka tests read a real broker's records through FrameConnection and compare them
with aiokafka's own reader, and check that a worker's feed consumer uses it."""

import asyncio
import logging
import os
import random
import struct

import numpy as np
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


def _address(buf) -> int:
    return np.frombuffer(buf, np.uint8).ctypes.data


def _feed(r: FrameReader, data: bytes, rnd: random.Random, cuts=(1, 3, 4, 5, 1000, STAGE_BYTES, 1 << 20)):
    """Give ``data`` to the reader as a transport would: into the buffer it asks for, at most that long and
    at most a random cut. Returns the addresses of the buffers given that were not the staging buffer."""
    pos, direct = 0, []
    while pos < len(data):
        buf = r.get_buffer()
        assert len(buf) > 0
        if buf.obj is not r._stage.obj:
            direct.append(_address(buf))
        n = min(len(buf), rnd.choice(cuts), len(data) - pos)
        buf[:n] = data[pos:pos + n]
        pos += n
        r.buffer_updated(n)
    return direct


def _received_in_place(direct: list[int], bodies: list[bytes]) -> bool:
    """Every buffer given for a direct read lies inside one of the bodies handed out, and there was one."""
    spans = [(_address(b), _address(b) + len(b)) for b in bodies if b]
    return bool(direct) and all(any(lo <= a < hi for lo, hi in spans) for a in direct)


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
    # the large bodies were (partly) received in place: into the very bytes objects handed out
    assert _received_in_place(direct, got)
    assert not r._ready and r._view is None and not r._head and not r._start


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


@pytest.mark.parametrize("start, size", [(struct.pack(">i", -5), -5), (b"HTTP/1.1 400 Bad Request\r\n", 1213486160),
                                         (bytes.fromhex("15030300020228"), 352518912)])
def test_a_peer_that_is_not_kafka_fails_the_connection_without_allocating_what_it_announces(monkeypatch, start,
                                                                                          size):
    """A negative size, or bytes of another protocol read as a size (an HTTP reply: 1.2 GB; a TLS alert:
    352 MB): a ConnectionError (aiokafka closes the connection quietly), and nothing of that size allocated."""
    closed, allocated = [], []

    class Transport:
        def close(self):
            closed.append(True)

    real = kafka_read._fastio.writable_bytes
    monkeypatch.setattr(kafka_read._fastio, "writable_bytes", lambda n: allocated.append(n) or real(n))

    async def main():
        r = FrameReader()
        r.set_transport(Transport())
        _feed(r, start + b"rest", random.Random(4))
        with pytest.raises(ConnectionError, match=f"size={size} .*not Kafka"):
            await r.readexactly(4)

    asyncio.run(main())
    assert closed == [True] and allocated == []


def test_a_large_response_is_allocated_only_once_its_first_64_kib_came(monkeypatch):
    allocated = []
    real = kafka_read._fastio.writable_bytes
    monkeypatch.setattr(kafka_read._fastio, "writable_bytes", lambda n: allocated.append(n) or real(n))
    body = os.urandom(STAGE_BYTES * 3)
    data = _stream([body])

    async def main():
        r = FrameReader()
        _feed(r, data[:4 + STAGE_BYTES - 1], random.Random(5))
        assert allocated == []
        _feed(r, data[4 + STAGE_BYTES - 1:], random.Random(6))
        return await _read_all(r, 1)

    assert asyncio.run(main()) == [body] and allocated == [len(body)]


def test_reading_pauses_while_many_responses_wait_and_resumes_when_they_are_read():
    calls = []

    class Transport:
        def pause_reading(self):
            calls.append("pause")

        def resume_reading(self):
            calls.append("resume")

    bodies = [os.urandom(10) for _ in range(3 * kafka_read.MAX_WAITING)]

    async def main():
        r = FrameReader()
        r.set_transport(Transport())
        _feed(r, _stream(bodies[:kafka_read.MAX_WAITING]), random.Random(7))
        assert calls == []  # that many waiting: reading goes on
        _feed(r, _stream(bodies[kafka_read.MAX_WAITING:]), random.Random(8))  # (a transport stops at a pause)
        assert calls == ["pause"]
        half = kafka_read.MAX_WAITING // 2
        got = [await _read_all(r, 1) for _ in range(len(bodies) - half - 1)]
        assert calls == ["pause"]
        got.append(await _read_all(r, 1))
        assert calls == ["pause", "resume"]  # half of MAX_WAITING left
        return [b for g in got for b in g] + await _read_all(r, half)

    assert asyncio.run(main()) == bodies


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
def test_the_worker_feed_consumer_reads_the_feed_through_it(kafka_bootstrap, tmp_path, in_place):
    """A worker's feed consumer receives the feed's records through FrameReader (at least every byte the
    feed sent), not with SURVEIL_FETCH_IN_PLACE=off; its producer keeps aiokafka's reader."""
    from aiokafka import TopicPartition

    from surveil.feed import feed
    from surveil.sim import simulate

    day = simulate(tmp_path / "day.svb", events=20_000, accounts=300, seed=3)
    received = [0]
    real = FrameReader.buffer_updated

    def counting(self, n):
        received[0] += n
        real(self, n)

    async def main():
        s = settings(kafka_bootstrap, fetch_in_place=in_place, accounts_csv=str(day.accounts_path))
        w = Worker(s)
        task = asyncio.create_task(w.run())
        try:
            await asyncio.wait_for(w.ready.wait(), 60)
            st = await feed([day.events_path], s, speed="max")
            tps = [TopicPartition(t, p) for t in s.feed_topics for p in range(s.feed_partitions)]
            ends = await w.consumer.end_offsets(tps)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not all(ends[tp] == 0 or (tp in w.states and w.states[tp].offset >= ends[tp] - 1) for tp in tps):
                assert loop.time() < deadline, "the worker did not reach the feed's end"
                await asyncio.sleep(0.1)
            assert w.status()["fetch_in_place"] is in_place  # what /status tells an operator
            return st.bytes, {type(c) for c in w.consumer._client._conns.values()}, {
                type(c) for c in w.producer.client._conns.values()}
        finally:
            w.stop.set()
            await asyncio.wait_for(task, 30)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FrameReader, "buffer_updated", counting)
        sent, consumer_kinds, producer_kinds = asyncio.run(main())
    assert sent > 500_000
    if in_place:
        assert FrameConnection in consumer_kinds and received[0] >= sent
    else:
        assert FrameConnection not in consumer_kinds and received[0] == 0
    assert FrameConnection not in producer_kinds


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and localhost, and its key (openssl, as on any Debian machine)."""
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_a_frame_connection_over_tls_connects_and_reads_large_responses(tmp_path):
    """FrameConnection.connect with security_protocol SSL (as SSL and SASL_SSL workers connect), against a
    TLS server answering Kafka's ApiVersions request with a 900 KB response: the connection's version lookup
    and a request after it parse the whole response; asyncio's TLS transport decrypts into the buffers a
    buffered protocol gives, and the large bodies go straight into the bytes handed to aiokafka."""
    import ssl

    from aiokafka.protocol.admin import ApiVersionRequest

    cert, key = _self_signed(tmp_path)
    n = 150_000  # (api_key, min, max) entries: 900 KB

    async def serve(reader, writer):
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                request = await reader.readexactly(size)
                api_key, version, correlation_id = struct.unpack(">hhi", request[:8])
                assert api_key == 18  # ApiVersions
                body = struct.pack(">hi", 0, n) + struct.pack(">hhh", 18, 0, 2) * n
                if version >= 1:
                    body += struct.pack(">i", 0)  # throttle_time_ms
                response = struct.pack(">i", correlation_id) + body
                writer.write(struct.pack(">i", len(response)) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        direct, bodies = [], []
        real_get, real_complete = FrameReader.get_buffer, FrameReader._complete

        def get_buffer(self):
            buf = real_get(self)
            if buf.obj is not self._stage.obj:
                direct.append(_address(buf))
            return buf

        def complete(self, body):
            bodies.append(body)
            real_complete(self, body)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(FrameReader, "get_buffer", get_buffer)
            mp.setattr(FrameReader, "_complete", complete)
            conn = FrameConnection("127.0.0.1", port, ssl_context=ssl.create_default_context(cafile=str(cert)),
                                   security_protocol="SSL")
            try:
                await asyncio.wait_for(conn.connect(), 30)
                response = await asyncio.wait_for(conn.send(ApiVersionRequest()), 30)
                kind = type(conn._reader)
            finally:
                conn.close()
                server.close()
                await server.wait_closed()
        return kind, len(response.api_versions), conn._versions, direct, bodies

    kind, got, versions, direct, bodies = asyncio.run(main())
    assert kind is FrameReader and got == n and versions == {18: (0, 2)}
    assert len(bodies) == 2 and _received_in_place(direct, bodies)

"""Reading and writing event files: JSON Lines (``.jsonl``, ``.jsonl.gz``) and binary frames (``.svb``)."""

from __future__ import annotations

import gzip
import os
import queue
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from surveil.events import binary, jsonl
from surveil.events.batch import Batch, Registry
from surveil.events.errors import EventFormatError, Reject
from surveil.exceptions import SurveilError

DEFAULT_BATCH = 65_536


class InputError(SurveilError):
    """An input file is missing, unreadable or of an unknown format."""


def detect_format(path: Path) -> str:
    """``"binary"`` or ``"jsonl"``, from the content (gzip is looked through)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head[:2] == b"\x1f\x8b":
                f.seek(0)
                with gzip.open(f) as g:
                    head = g.read(4)
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, not a file: {path}") from None
    except PermissionError:
        raise InputError(f"input file is not readable (permission denied): {path}") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise InputError(f"input file is not readable: {path}: {e}") from None
    return "binary" if head == binary.MAGIC else "jsonl"


def check_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Resolve and check every input before a run starts, so that a typo fails fast."""
    out = []
    for p in paths:
        path = Path(p)
        detect_format(path)
        out.append(path)
    return out


def _open_raw(path: Path) -> BinaryIO:
    f = open(path, "rb")
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.open(f)  # type: ignore[return-value]
    f.seek(0)
    return f


def read_events(path: str | os.PathLike, reg: Registry, rejects: list[Reject],
                batch_size: int = DEFAULT_BATCH, prefetch: bool = True, symbols: str = "all") -> Iterator[Batch]:
    """Batches of valid events from one file, in file order; bad lines or records go to ``rejects``.

    With ``prefetch``, JSON Lines are decoded one block ahead in a background thread: polars parses
    without holding the GIL, so parsing the next block overlaps with whatever the caller does with
    this one (the engine). The batches and their order are the same either way."""
    path = Path(path)
    fmt = detect_format(path)
    source = str(path)
    if fmt == "binary":
        yield from _read_binary(path, reg, source, rejects)
    elif prefetch:
        yield from _ahead(_read_jsonl(path, reg, source, rejects, batch_size, symbols))
    else:
        yield from _read_jsonl(path, reg, source, rejects, batch_size, symbols)


def _ahead(gen: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Run a generator one or two items ahead in a thread; its exceptions surface here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def run() -> None:
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put((done, e))

    t = threading.Thread(target=run, name="surveil-reader", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()


def _gzip_errors(gen: Iterator[Batch], path: Path, f) -> Iterator[Batch]:
    """``gen``'s batches; damaged or truncated gzip data is an :class:`InputError` naming the file and where the
    damage is: the uncompressed byte the decompressor reached (the data after it cannot be decompressed: deflate
    has nothing to resynchronise at). The run stops with exit 1 rather than go on with part of a file."""
    try:
        yield from gen
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        if not isinstance(f, gzip.GzipFile):
            raise InputError(f"input file {path} could not be read: {e}") from None
        try:
            at = f"uncompressed byte {f.tell():,}"
        except (OSError, EOFError, ValueError, zlib.error):
            at = "an unknown position"
        what = ("is truncated (the gzip stream ends early)" if isinstance(e, EOFError)
                else f"has damaged gzip data ({e})")
        raise InputError(f"input file {path} {what}: the data from {at} on cannot be decompressed") from None


def _read_binary(path: Path, reg: Registry, source: str, rejects: list[Reject]) -> Iterator[Batch]:
    """Frame by frame with plain reads (``binary.read_frames``): memory stays at about one frame (an mmap of the
    whole file would count every page read towards the process's resident memory). A damaged frame is a
    reject and reading goes on at the next frame."""
    with _open_raw(path) as f:
        yield from _gzip_errors(binary.read_frames(f, reg, source, rejects), path, f)


#: a JSON Lines file is read this many bytes at a time at most (with a line cut by the end of a read, and a block
#: being decoded, the reader holds at most about twice this, whatever the file)
MAX_READ_BYTES = 16 << 20
UTF8_BOM = b"\xef\xbb\xbf"


def text_of(path: str | os.PathLike, what: str, error: type[Exception]) -> str:
    """The text of a file a user gives (a rules, accounts or securities file): UTF-8, a byte order mark at its
    start allowed (spreadsheets and Windows editors write one); ``error`` naming ``what`` and the file (and, for
    bytes that are not UTF-8, their line and byte) when it is missing, unreadable or not UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, not a file: {path}") from None
    except OSError as e:
        raise error(f"{what} is not readable: {path}: {e}") from None
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{what} {path} is not UTF-8 text: line {line} (byte {e.start}) has "
                    f"{data[e.start:e.start + 4]!r}; save it as UTF-8") from None


def _read_jsonl(path: Path, reg: Registry, source: str, rejects: list[Reject],
                batch_size: int, symbols: str = "all") -> Iterator[Batch]:
    """Blocks of about ``batch_size`` complete lines (estimated from the line length seen so far)."""
    with _open_raw(path) as f:
        yield from _gzip_errors(_jsonl_blocks(f, reg, source, rejects, batch_size, symbols), path, f)


def _jsonl_blocks(f, reg: Registry, source: str, rejects: list[Reject], batch_size: int,
                  symbols: str) -> Iterator[Batch]:
    """The blocks of ``_read_jsonl``. A line longer than ``jsonl.MAX_LINE_BYTES`` is one reject (its first bytes,
    its length, its byte offset) and is read past without being held: memory stays bounded by the reads."""
    limit = jsonl.MAX_LINE_BYTES
    lineno = 1
    pos = 0  # the file offset of carry[0]
    carry = b""
    long_line: list | None = None  # a line longer than the limit being read past: [line, offset, head, length]
    avg = 160.0
    first = True
    while True:
        data = f.read(min(MAX_READ_BYTES, max(1 << 16, int(batch_size * avg))))
        if first:
            first = False
            if data.startswith(UTF8_BOM):  # a byte order mark at the start of the file (Windows tools write one)
                data = data[len(UTF8_BOM):]
                pos = len(UTF8_BOM)
        if not data:
            break
        if long_line is not None:
            nl = data.find(b"\n")
            if nl < 0:
                long_line[3] += len(data)
                pos += len(data)
                continue
            long_line[3] += nl
            rejects.append(_long_line_reject(source, *long_line))
            long_line = None
            lineno += 1
            pos += nl + 1
            data = data[nl + 1:]
        cut = data.rfind(b"\n")
        if cut < 0:
            carry += data
            if len(carry) > limit:
                long_line = [lineno, pos, carry[:_LONG_HEAD], len(carry)]
                pos += len(carry)
                carry = b""
            continue
        if carry:
            block = carry + data[: cut + 1]
        else:
            block = data if cut == len(data) - 1 else data[: cut + 1]
        carry = data[cut + 1:]
        n = block.count(b"\n")
        size = len(block)
        if size > limit:  # only then can a line of it be too long
            block = _drop_long_lines(block, lineno, pos, source, rejects)
        avg = max(16.0, len(block) / n)
        yield jsonl.decode_block(block, lineno, reg, source, rejects, n, symbols)
        lineno += n
        pos += size
        if len(carry) > limit:
            long_line = [lineno, pos, carry[:_LONG_HEAD], len(carry)]
            pos += len(carry)
            carry = b""
    if long_line is not None:
        rejects.append(_long_line_reject(source, *long_line))
    elif carry:
        yield jsonl.decode_block(carry, lineno, reg, source, rejects, symbols=symbols)


_LONG_HEAD = 200  # the bytes of an over-long line kept in its reject


def _long_line_reject(source: str, lineno: int, offset: int, head: bytes, length: int) -> Reject:
    text = head.decode("utf-8", "replace")
    return Reject(source=source, location=lineno, field="line", value=text,
                  reason=f"line of {length:,} bytes at byte {offset:,} is longer than the maximum of "
                         f"{jsonl.MAX_LINE_BYTES:,} bytes (not read)",
                  raw=text, extra={"byte_offset": offset, "line_bytes": length})


def _drop_long_lines(block: bytes, lineno: int, pos: int, source: str, rejects: list[Reject]) -> bytes:
    """``block`` (complete lines from file offset ``pos``, line ``lineno``) with every line longer than the limit
    made empty (a blank line, so the other lines keep their numbers) and rejected. A quick look first: when
    every stretch of half the limit holds a newline, no line can be longer than the limit."""
    limit = jsonl.MAX_LINE_BYTES
    half = limit // 2
    if all(block.find(b"\n", i, i + half) >= 0 for i in range(0, len(block) - half, half)):
        return block
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    long = np.flatnonzero(ends - starts > limit)
    if not len(long):
        return block
    parts = []
    at = 0
    for k in long.tolist():
        lo, hi = int(starts[k]), int(ends[k])
        rejects.append(_long_line_reject(source, lineno + k, pos + lo, block[lo:lo + _LONG_HEAD], hi - lo))
        parts.append(block[at:lo])
        at = hi
    parts.append(block[at:])
    return b"".join(parts)


def output_format(path: str | os.PathLike) -> str:
    name = str(path).lower()
    if name.endswith(".svb") or name.endswith(".svb.gz"):
        return "binary"
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz") or name.endswith(".json") or name == "-":
        return "jsonl"
    raise InputError(f"cannot tell the output format of {path}: use .jsonl, .jsonl.gz or .svb")


class EventWriter:
    """Writes batches to a file in the format its name says (``.jsonl[.gz]`` or ``.svb[.gz]``)."""

    def __init__(self, path: str | os.PathLike, reg: Registry, frame_size: int = DEFAULT_BATCH):
        self.path = Path(path)
        self.reg = reg
        self.format = output_format(path)
        self.frame_size = frame_size
        self.count = 0
        self.frames = 0
        self.dictionary = binary.FrameDict()  # files are written as delta frames
        raw = open(self.path, "wb")
        # mtime=0: the same events give byte-identical .gz files
        self._f: BinaryIO = (gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0)  # type: ignore
                             if str(path).endswith(".gz") else raw)
        self._raw = raw

    def write(self, batch: Batch) -> None:
        for start in range(0, len(batch), self.frame_size):
            part = batch.take(slice(start, start + self.frame_size))
            if self.format == "binary":
                # the first frame and every KEY_FRAME_INTERVAL-th: version 5 with the whole dictionary, so that
                # a damaged frame costs the frames up to the next of these, not the rest of the file
                full = self.frames % binary.KEY_FRAME_INTERVAL == 0
                self._f.write(binary.encode_frame(part, self.reg, self.dictionary, first=self.count, full=full))
                self.frames += 1
            else:
                self._f.write(jsonl.encode_lines(part, self.reg))
            self.count += len(part)

    def close(self) -> None:
        self._f.close()
        if self._f is not self._raw:
            self._raw.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["read_events", "EventWriter", "InputError", "EventFormatError", "check_inputs",
           "detect_format", "output_format"]

"""Reading and writing event files: JSON Lines (``.jsonl``, ``.jsonl.gz``) and binary frames (``.svb``)."""

from __future__ import annotations

import gzip
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

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
    except (OSError, EOFError) as e:
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


def _read_binary(path: Path, reg: Registry, source: str, rejects: list[Reject]) -> Iterator[Batch]:
    """Frame by frame with plain reads: memory stays at about one frame (an mmap of the whole file
    would count every page read towards the process's resident memory)."""
    with _open_raw(path) as f:
        dictionary = binary.FrameDict()
        offset = 0
        rec_no = 0
        while True:
            head = f.read(binary.HEADER.size)
            if not head:
                return
            if len(head) < binary.HEADER.size:
                rejects.append(_frame_reject(source, rec_no, offset, head, "truncated frame header"))
                return
            magic, _v, rec_size, n, *tables, slen = binary.HEADER.unpack(head)
            body_len = slen + n * rec_size
            if magic != binary.MAGIC or rec_size not in binary.RECORD_SIZES or body_len > (1 << 31):
                rejects.append(_frame_reject(source, rec_no, offset, head,
                                             f"bad frame header (magic {magic!r}, record size {rec_size})"))
                return
            body = f.read(body_len)
            try:
                batch, _ = binary.decode_frame_at(head + body, 0, reg, source, rec_no, rejects, dictionary)
            except EventFormatError as e:
                rejects.append(_frame_reject(source, rec_no, offset, head, str(e)))
                return
            offset += binary.HEADER.size + body_len
            rec_no += n
            yield batch


def _frame_reject(source: str, rec_no: int, offset: int, head: bytes, reason: str) -> Reject:
    return Reject(source=source, location=rec_no, field="frame", value=offset, reason=f"{source}: {reason}",
                  raw=head.hex(), extra={"kind": "binary", "frame_offset": offset})


def _read_jsonl(path: Path, reg: Registry, source: str, rejects: list[Reject],
                batch_size: int, symbols: str = "all") -> Iterator[Batch]:
    """Blocks of about ``batch_size`` complete lines (estimated from the line length seen so far)."""
    lineno = 1
    carry = b""
    avg = 160.0
    with _open_raw(path) as f:
        while True:
            want = max(1 << 16, int(batch_size * avg))
            data = f.read(want)
            if not data:
                break
            cut = data.rfind(b"\n")
            if cut < 0:
                carry += data
                continue
            if carry:
                block = carry + data[: cut + 1]
            else:
                block = data if cut == len(data) - 1 else data[: cut + 1]
            carry = data[cut + 1:]
            n = block.count(b"\n")
            avg = max(16.0, len(block) / n)
            yield jsonl.decode_block(block, lineno, reg, source, rejects, n, symbols)
            lineno += n
    if carry:
        yield jsonl.decode_block(carry, lineno, reg, source, rejects, symbols=symbols)


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
                self._f.write(binary.encode_frame(part, self.reg, self.dictionary))
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

"""Public interfaces of dependencies only (a static check of the code): no aiokafka private attribute
(``_client``, ``_subscription``, ``_coordinator``, ``_fetcher``), no private aiokafka module
(``aiokafka.conn``, ``aiokafka.client``, or any with a part starting with ``_``), nothing imported from
aiokafka whose name starts with ``_``, no ``create_conn``, and no assignment to an attribute of an aiokafka
module (a monkeypatch). The attribute names are forbidden whatever object they are read from: our own objects
do not use them, so a hit is an aiokafka object's. It reads the code, it does not run it: it cannot see a
``getattr`` with a computed name, but it catches every plain use like the ones removed on 2026-12-07
(``surveil/stream/kafka_read.py``; ``Worker`` and the console's feed read ``_subscription`` and ``_client``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("surveil", "bench", "tests")
PRIVATE_ATTRIBUTES = {"_client", "_subscription", "_coordinator", "_fetcher"}
PRIVATE_MODULES = {"aiokafka.conn", "aiokafka.client"}
FORBIDDEN_NAMES = {"create_conn"}


def _private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "aiokafka" and (
        any(name == m or name.startswith(m + ".") for m in PRIVATE_MODULES) or any(p.startswith("_") for p in parts))


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain on a name, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def violations(source: str, filename: str = "<code>") -> list[str]:
    tree = ast.parse(source, filename)
    aiokafka_names = {"aiokafka"}  # names bound to aiokafka modules here (import aiokafka.admin as x: x)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aiokafka_names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("aiokafka"))
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES | FORBIDDEN_NAMES:
            hit(node, f"attribute .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            hit(node, f"name {node.id}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _private_module(a.name):
                    hit(node, f"import {a.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiokafka"):
            if _private_module(node.module):
                hit(node, f"from {node.module} import ...")
            for a in node.names:
                if a.name.startswith("_") or a.name in FORBIDDEN_NAMES or _private_module(f"{node.module}.{a.name}"):
                    hit(node, f"from {node.module} import {a.name}")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for t in targets:
                name = _dotted(t)
                if isinstance(t, ast.Attribute) and name.split(".")[0] in aiokafka_names:
                    hit(node, f"assignment to {name}")
    return found


def _files() -> list[Path]:
    return sorted(p for d in CHECKED for p in (ROOT / d).rglob("*.py"))


def test_the_code_uses_only_public_interfaces_of_aiokafka():
    files = _files()
    assert any(p.name == "worker.py" for p in files) and any(p.name == "feed.py" for p in files)
    found = [v for p in files for v in violations(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize("code", [
    "state = c._subscription.subscription.assignment.state_value(tp)",
    "await c._client.force_metadata_update()",
    "x = consumer._coordinator; y = consumer._fetcher",
    "import aiokafka.client",
    "import aiokafka.conn as conn",
    "from aiokafka.conn import AIOKafkaConnection",
    "from aiokafka.client import AIOKafkaClient",
    "from aiokafka import client",
    "from aiokafka.util import _private",
    "from aiokafka._internal import thing",
    "import aiokafka\naiokafka.client.create_conn = f",
    "import aiokafka.admin as adm\nadm.AIOKafkaAdminClient.describe_topics = f",
])
def test_the_check_finds_what_was_removed(code):
    assert violations(code)


@pytest.mark.parametrize("code", [
    "from aiokafka import AIOKafkaConsumer, TopicPartition",
    "from aiokafka.admin import AIOKafkaAdminClient, NewTopic",
    "from aiokafka.errors import KafkaError",
    "self._idle = {}; w._topics = set()",
    "hw = consumer.highwater(tp); await consumer.position(tp)",
])
def test_the_check_lets_public_calls_and_our_own_attributes_be(code):
    assert violations(code) == []

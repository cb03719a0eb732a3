"""Checkpoints are authenticated data: a checkpoint written without the workers' key, copied from another
partition, or damaged in one byte is refused (the worker then rebuilds that partition's state); one written with
the key for that partition loads."""

import orjson
import pytest
from evtools import T0, S, order

from surveil.engine import load_config
from surveil.engine.refdata import RefData
from surveil.stream import checkpoint
from surveil.stream.partition import PartitionState

KEY = b"the group's secret"
HERE = b"g|f.sse:0"


def blob(key=KEY, binding=HERE):
    st = PartitionState("f.sse:0", load_config(), RefData(), 2)
    st.handle_many([(0, orjson.dumps([order(T0 + i * S // 10, "A", oid=i) for i in range(50)]))], "f.sse", 0)
    return st.dumps(key, binding)


def test_a_checkpoint_with_the_key_for_its_partition_loads():
    st = PartitionState.loads(blob(), RefData(), key=KEY, binding=HERE)
    assert st.offset == 0 and st.engine.events_in == 50


@pytest.mark.parametrize("case", ["no key", "another key", "another partition", "one byte"])
def test_a_forged_foreign_or_damaged_checkpoint_is_refused(case):
    data = {"no key": lambda: blob(checkpoint.UNKEYED),
            "another key": lambda: blob(b"someone else"),
            "another partition": lambda: blob(binding=b"g|f.sse:1"),
            "one byte": lambda: bytearray(blob())}[case]()
    if case == "one byte":
        data[len(data) // 2] ^= 1
        data = bytes(data)
    with pytest.raises(checkpoint.CheckpointError, match="authentication"):
        PartitionState.loads(data, RefData(), key=KEY, binding=HERE)


def test_a_forged_checkpoint_that_claims_a_late_offset_is_not_believed():
    """What a forger would write to skip a partition's input: a well-formed document at a high offset."""
    doc = checkpoint.unseal(blob(), key=KEY, binding=HERE)
    doc["offset"] = 10**9
    forged = checkpoint.seal(checkpoint.pack(doc), checkpoint.UNKEYED, HERE)
    with pytest.raises(checkpoint.CheckpointError):
        PartitionState.loads(forged, RefData(), key=KEY, binding=HERE)

"""The lifecycle topic's key partitioning against aiokafka's reference murmur2 partitioner.

Pure logic, no servers: the worker computes partitions itself (faster than the
producer's per-message path), and must agree with Kafka's default partitioner
byte for byte, or customers' changes would land where other clients don't expect.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams import lifecycle


@given(st.binary(max_size=200))
def test_murmur2_matches_kafka(data: bytes) -> None:
    assert lifecycle.murmur2(data) == murmur2(data)


@given(st.binary(min_size=1, max_size=80), st.integers(1, 64))
def test_partition_matches_default_partitioner(key: bytes, partitions: int) -> None:
    expected = DefaultPartitioner()(key, list(range(partitions)), [])
    assert lifecycle.partition_for(key, partitions) == expected

"""The reply-size encoder of the per-job replies: a lookup table below 8 KiB, int.to_bytes
above. Both sides of the table's edge must encode like ``int.to_bytes(4, "big")``, and a
reply whose body crosses the edge must still frame correctly on the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearshift.broker._packets import SIZE_TABLE_LIMIT as _SIZE_TABLE_LIMIT
from gearshift.broker._packets import be32 as _be32

from ._harness import P, grab, make_broker, submit, worker


@pytest.mark.parametrize("size", [0, 1, 255, 256, _SIZE_TABLE_LIMIT - 1, _SIZE_TABLE_LIMIT,
                                  65_536, 2**32 - 1])
def test_edges_encode_like_to_bytes(size: int) -> None:
    assert _be32(size) == size.to_bytes(4, "big")


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_any_size_encodes_like_to_bytes(size: int) -> None:
    assert _be32(size) == size.to_bytes(4, "big")


@pytest.mark.parametrize("payload_size", [_SIZE_TABLE_LIMIT - 40, _SIZE_TABLE_LIMIT + 40])
def test_job_assign_frames_payloads_either_side_of_the_table(payload_size: int) -> None:
    broker = make_broker()
    client = broker.connect()
    data = b"p" * payload_size
    handle = submit(broker, client, b"f", data)
    w = worker(broker, b"f")
    # grab() decodes the reply with the codec: a wrong size would misframe it.
    assert grab(broker, w) == (P.JOB_ASSIGN, [handle, b"f", data])

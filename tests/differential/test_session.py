"""The transcript normalisation must hide only what may differ, never a real difference."""

from __future__ import annotations

from ._session import HandleMap, mask_pid, mask_version


def test_handles_are_numbered_in_order_of_appearance() -> None:
    handles = HandleMap()
    handles.learn(b"H:host:7")
    handles.learn(b"H:other:1")
    handles.learn(b"H:host:7")
    assert handles.apply(b"H:other:1 H:host:7") == b"H2 H1"


def test_a_handle_never_matches_the_front_of_a_longer_one() -> None:
    handles = HandleMap()
    handles.learn(b"H:x:1")
    assert handles.apply(b"H:x:12\tH:x:1\n") == b"H:x:12\tH1\n"
    handles.learn(b"H:x:12")
    assert handles.apply(b"H:x:12\tH:x:1\n") == b"H2\tH1\n"


def test_a_handle_inside_a_field_with_trailing_nul_is_replaced() -> None:
    handles = HandleMap()
    handles.learn(b"H:x:3")
    assert handles.apply(b"H:x:3\0") == b"H1\0"


def test_unknown_bytes_are_left_alone() -> None:
    assert HandleMap().apply(b"no-such-handle") == b"no-such-handle"


def test_pid_and_version_masks_accept_only_the_expected_shape() -> None:
    assert mask_pid(b"OK 4242\n") == b"OK <pid>\n"
    assert mask_pid(b"OK 4242\r\n") == b"OK 4242\r\n"
    assert mask_pid(b"OK abc\n") == b"OK abc\n"
    assert mask_version(b"OK 1.1.20+ds\n") == b"OK <version>\n"
    assert mask_version(b"OK 0.1.0\n") == b"OK <version>\n"
    assert mask_version(b"ERR UNKNOWN_COMMAND\r\n") == b"ERR UNKNOWN_COMMAND\r\n"

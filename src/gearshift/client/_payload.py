"""Payload codecs: bytes by default, JSON or msgpack when both ends are Python.

Gearman payloads are opaque bytes; a codec is only an opt-in convenience for
``client.call(...)`` and ``@worker.task`` so Python callers can pass dicts and lists.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Protocol

from gearshift.client._errors import PayloadError


class Codec(Protocol):
    name: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class BytesCodec:
    """The identity codec: bytes pass through, ``str`` is UTF-8 encoded, None is empty."""

    name = "bytes"

    def encode(self, value: Any) -> bytes:
        return to_bytes(value)

    def decode(self, data: bytes) -> Any:
        return data


class JsonCodec:
    name = "json"

    def encode(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"cannot encode as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data) if data else None
        except ValueError as exc:
            raise PayloadError(f"payload is not JSON: {exc}") from exc


class MsgpackCodec:
    name = "msgpack"

    def __init__(self) -> None:
        try:
            self._msgpack: Any = importlib.import_module("msgpack")
        except ImportError as exc:
            raise PayloadError(
                "the msgpack codec needs the msgpack package (pip install 'gearshift[msgpack]')"
            ) from exc

    def encode(self, value: Any) -> bytes:
        try:
            data: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"cannot encode as msgpack: {exc}") from exc
        return data

    def decode(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False)
        except ValueError as exc:
            raise PayloadError(f"payload is not msgpack: {exc}") from exc


def get_codec(codec: str | Codec) -> Codec:
    """``"bytes"``, ``"json"``, ``"msgpack"`` or any object with encode/decode."""
    if not isinstance(codec, str):
        return codec
    if codec == "bytes":
        return BytesCodec()
    if codec == "json":
        return JsonCodec()
    if codec == "msgpack":
        return MsgpackCodec()
    raise ValueError(f"unknown codec {codec!r} (expected 'bytes', 'json' or 'msgpack')")


def to_bytes(value: Any) -> bytes:
    """Workloads and results: bytes as-is, ``str`` as UTF-8, None as empty.

    Raises:
        TypeError: anything else (pick a codec instead of guessing a serialisation).
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if value is None:
        return b""
    raise TypeError(f"payload must be bytes or str, not {type(value).__name__} "
                    "(use codec='json' to send Python objects)")

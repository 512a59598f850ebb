"""Fixtures the broker tests share: a fresh broker and an admin console peer on it."""

from __future__ import annotations

import pytest

from gearshift.broker import Broker, Peer

from ._harness import make_broker


@pytest.fixture
def broker() -> Broker:
    return make_broker()


@pytest.fixture
def console(broker: Broker) -> Peer:
    return broker.connect("127.0.0.1", 40000, fd=9)

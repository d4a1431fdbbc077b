"""`free_port`: a port below the ephemeral range, never the same one twice in a process."""

from __future__ import annotations

import pytest

from bytespike_common import devstack


class Draws:
    """A `random.Random` stand-in drawing the given ports in turn."""

    def __init__(self, *ports: int) -> None:
        self.ports = list(ports)

    def randrange(self, low: int, high: int) -> int:
        port = self.ports.pop(0)
        assert low <= port < high
        return port


def test_a_port_is_not_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing binds between the picks, as when a stack picks all its ports at once: the
    # second draw of the same number must not be handed out again.
    monkeypatch.setattr(devstack, "_handed_out", {})
    monkeypatch.setattr(devstack, "_random", Draws(20_011, 20_011, 20_013))
    assert devstack.free_port() == 20_011
    assert devstack.free_port() == 20_013


def test_a_preferred_port_is_taken_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "_handed_out", {})
    monkeypatch.setattr(devstack, "_random", Draws(20_021))
    assert devstack.free_port(20_017) == 20_017
    assert devstack.free_port(20_017) == 20_021


def test_what_is_remembered_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "_handed_out", {})
    monkeypatch.setattr(devstack, "HANDED_OUT_MAX", 3)
    for port in (20_031, 20_032, 20_033, 20_034):
        assert devstack.free_port(port) == port
    assert list(devstack._handed_out) == [20_032, 20_033, 20_034]

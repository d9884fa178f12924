"""The emulator harness itself: a port taken before Azurite binds it is never mistaken for
Azurite, and a port it picked itself is picked again."""
from __future__ import annotations

import socket

import pytest

from localservices import azurite as harness
from localservices.ports import free_ports


@pytest.fixture
def held_port():
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_picked_port_taken_meanwhile_is_picked_again(tmp_path, monkeypatch, held_port):
    picks = iter([[held_port], *([port] for port in free_ports(3))])
    monkeypatch.setattr(harness, "free_ports", lambda count: next(picks))
    emulator = harness.Azurite(str(tmp_path))
    assert emulator.port == held_port
    try:
        emulator.start()
        assert emulator.port != held_port and emulator.running
        name = emulator.create_container()
        assert emulator.blobs(name) == {}
    finally:
        emulator.stop()


def test_a_given_port_held_by_another_program_fails_the_start(tmp_path, held_port):
    emulator = harness.Azurite(str(tmp_path), held_port)
    with pytest.raises(harness.AzuriteError, match="Azurite exited with code"):
        emulator.start()
    assert emulator.port == held_port and not emulator.running

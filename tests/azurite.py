"""The Azurite blob emulator for tests: one process per test session, on 127.0.0.1.

``make setup`` installs Azurite under ``.tools/``; a missing emulator fails the tests that
need it (it is part of the test set-up, not an optional extra). Use the fixtures:

``azurite``
    The session's :class:`localservices.azurite.Azurite`, started on first use and stopped
    at the end.
``container``
    A fresh, empty container for one test: ``(name, url)`` with ``url`` = ``az://NAME``.
``azure_env``
    ``AZURE_STORAGE_CONNECTION_STRING`` set to the emulator's, other ``AZURE_STORAGE_*``
    removed, so that tests see exactly one credential.
"""
from __future__ import annotations

import pytest

from localservices.azurite import AZURE_ENV, Azurite, AzuriteError

__all__ = ["azurite", "container", "azure_env"]


def _started(emulator: Azurite) -> Azurite:
    """``emulator`` running; a test that needs it fails in one line when it cannot start."""
    try:
        return emulator.start()
    except AzuriteError as exc:
        pytest.fail(str(exc), pytrace=False)


_session: dict = {}


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """The session's emulator: started on first use, stopped when the session ends.

    Kept in a module-level slot so that test modules importing this fixture share one
    process.
    """
    emulator = _session.get("azurite")
    if emulator is None:
        emulator = _session["azurite"] = Azurite(str(tmp_path_factory.mktemp("azurite")))
    _started(emulator)
    yield emulator
    emulator.stop()
    _session.pop("azurite", None)


@pytest.fixture
def azure_env(monkeypatch, azurite):
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string())
    return azurite.connection_string()


@pytest.fixture
def container(azurite, azure_env):
    """A fresh container; ``(name, "az://NAME")``. The emulator is restarted if a test stopped it."""
    _started(azurite)
    name = azurite.create_container()
    return name, f"az://{name}"

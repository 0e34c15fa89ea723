"""Fixtures shared by the engine tests."""

from __future__ import annotations

import socket

import pytest
import torch


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to reach the network fails (socket connect, DNS, create_connection)."""

    def refuse(*args, **kwargs):
        raise OSError("network access blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster (and politer on two shared cores) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

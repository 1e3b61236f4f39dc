"""Fixtures for the control-plane tests: a real extension server and client, and whole stacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import pytest

from harness.lockstep.stack import Stack, StackSettings
from sut.extension import ExtensionClient, ExtensionServer, ExtensionSettings, RetryPolicy
from tests.controlplane.manifests import Site, world

DEADLINE = 0.2
RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.02, max_backoff=0.05)

ONE = Site("one", "HTTPS", 443, "one.example.com")
TWO = Site("two", "HTTPS", 443, "two.example.com")
WEB = Site("web", "HTTP", 8080, "web.example.com")
SITES = (ONE, TWO, WEB)

StackFactory = Callable[..., Stack]


@pytest.fixture
def extension_server() -> Iterator[ExtensionServer]:
    with ExtensionServer(generation=1) as server:
        yield server


@pytest.fixture
def extension_client(extension_server: ExtensionServer) -> Iterator[ExtensionClient]:
    settings = ExtensionSettings(extension_server.address, deadline=DEADLINE, retry=RETRY)
    with ExtensionClient(settings) as client:
        yield client


@pytest.fixture
def make_stack() -> Iterator[StackFactory]:
    """Start stacks serving `sites` (echo pods scaled first); every one is stopped afterwards."""
    started: list[Stack] = []

    def start(sites: Sequence[Site] = SITES, **settings: Any) -> Stack:
        stack = Stack(attrs.evolve(StackSettings(), **settings))
        started.append(stack)
        for service in sorted({site.backend for site in sites}):
            stack.scale("default", service, 1)
        return stack.start(world(sites))

    try:
        yield start
    finally:
        for stack in started:
            stack.stop()

"""Hostname intersection and coverage (HTTPRouteSpec.Hostnames, Listener.Hostname docs)."""

from __future__ import annotations

import pytest

from sut.translate.hostnames import covers, more_specific, route_hostnames_on_listener


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        (None, (), ("*",)),
        ("foo.example.com", (), ("foo.example.com",)),
        ("test.example.com", ("test.example.com",), ("test.example.com",)),
        ("test.example.com", ("*.example.com",), ("test.example.com",)),
        ("*.example.com", ("test.example.com", "test.example.net"), ("test.example.com",)),
        ("*.example.com", ("foo.test.example.com",), ("foo.test.example.com",)),
        ("*.example.com", ("*.example.com",), ("*.example.com",)),
        ("*.example.com", ("*.foo.example.com",), ("*.foo.example.com",)),
        ("*.foo.example.com", ("*.example.com",), ("*.foo.example.com",)),
        ("*.example.com", ("example.com",), ()),
        ("*.example.com", ("example.net",), ()),
        (None, ("b.io", "a.io"), ("a.io", "b.io")),
    ],
)
def test_route_hostnames_on_listener(
    listener: str | None, route: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert route_hostnames_on_listener(listener, route) == expected


def test_coverage_and_specificity() -> None:
    assert covers("*.example.com", "a.b.example.com")
    assert not covers("*.example.com", "example.com")
    assert not covers("*.example.com", "badexample.com")
    assert covers(None, "anything.io")
    assert more_specific("a.example.com", "*.example.com")
    assert more_specific("*.a.example.com", "*.example.com")
    assert more_specific("*.example.com", None)
    assert not more_specific("*.example.com", "*.example.com")
    assert not more_specific("*.example.org", "*.example.com")

"""Whether a client's streams are at rest on a published snapshot, as the wire alone shows it.

Convergence is judged here for every xDS server, in-process or external, so nothing depends on
a server's own account of its streams. A stream is at rest on a snapshot when no response is
waiting for its ACK or NACK and, for every type it opened, what it holds of the names it wants
(`TypeView.wants`) is exactly the snapshot's content of those names. Contents are compared, never
versions: an external server owns its versions. A Delta client's `initial_resource_versions`
count as held when the monitor saw that (name, version) delivered before, with that content.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from harness.lockstep.monitor.messages import _MESSAGE_CLASSES, TYPE_SHORT, WireResource
from harness.lockstep.monitor.view import StreamView, TypeView

__all__ = ["Expected", "by_type", "stream_differences"]

Expected = Mapping[str, Mapping[str, bytes]]
"""type_url -> name -> serialized resource: what a published snapshot holds."""

_SHOWN = 4


def by_type(resources: Mapping[tuple[str, str], bytes]) -> dict[str, dict[str, bytes]]:
    """A publication's (type_url, name) -> body, grouped by type."""
    grouped: dict[str, dict[str, bytes]] = {}
    for (type_url, name), body in resources.items():
        grouped.setdefault(type_url, {})[name] = body
    return grouped


def stream_differences(
    stream: StreamView,
    expected: Expected,
    received: Mapping[tuple[str, str, str], WireResource],
) -> list[str]:
    """Every way in which `stream` is not at rest on `expected`; empty when it is.
    `received` is what the client was sent under (type, name, version), on any stream."""
    problems: list[str] = []
    if stream.pending:
        types = sorted({_short(p.response.type_url) for p in stream.pending.values()})
        problems.append(
            f"stream {stream.key}: {len(stream.pending)} response(s) not ACKed or NACKed yet"
            f" ({', '.join(types)})"
        )
    for type_url, view in sorted(stream.types.items()):
        problems += _type_differences(stream, view, expected.get(type_url, {}), received)
    return problems


def _type_differences(
    stream: StreamView,
    view: TypeView,
    expected: Mapping[str, bytes],
    received: Mapping[tuple[str, str, str], WireResource],
) -> list[str]:
    want = {name: body for name, body in expected.items() if view.wants(name)}
    have: dict[str, bytes | None] = {
        name: item.body for name, item in view.held.items() if view.wants(name)
    }
    for name, version in view.reported.items():
        if name not in have and view.wants(name):
            known = received.get((view.type_url, name, version))
            have[name] = known.body if known is not None else None
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    differing = sorted(
        name for name in set(want) & set(have) if not _same(view.type_url, want[name], have[name])
    )
    where = f"stream {stream.key} {_short(view.type_url)}"
    problems = []
    if missing:
        problems.append(f"{where}: not delivered: {_names(missing)}")
    if extra:
        problems.append(f"{where}: still held though not published: {_names(extra)}")
    if differing:
        problems.append(f"{where}: held content differs from the published: {_names(differing)}")
    return problems


def _same(type_url: str, published: bytes, held: bytes | None) -> bool:
    """Equal contents: the same bytes, or the same message (a foreign server may serialize
    differently)."""
    if held is None:
        return False
    if held == published:
        return True
    kind = _MESSAGE_CLASSES.get(type_url)
    if kind is None:
        return False
    try:
        return bool(kind.FromString(held) == kind.FromString(published))
    except DecodeError:
        return False


def _short(type_url: str) -> str:
    return TYPE_SHORT.get(type_url, type_url)


def _names(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(repr(name) for name in names[:_SHOWN]) + more

"""The seam between the stream core and its two modes, SotW and Delta.

The core (`stream.AdsStream`) decides what to send and when; a `StreamPolicy` reads the mode's
requests into one `ClientRequest`, applies what they say about subscriptions, and shapes each
`Outgoing` response into the mode's proto. A policy changes the core only through the
`Subscription` it returns, so neither branches on the other's mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from immutables import Map

from sut.xds.resources import Resource, ResourceType
from sut.xds.snapshot import Snapshot
from sut.xds.subscription import Subscription

if TYPE_CHECKING:
    from sut.xds.stream import AdsStream

__all__ = ["ClientRequest", "Outgoing", "StreamPolicy"]


@attrs.frozen
class ClientRequest:
    """A DiscoveryRequest or DeltaDiscoveryRequest as the core reads it."""

    type_url: str
    node: Any = attrs.field(eq=False, repr=False)
    """The `Node` proto: only the first request of a stream must carry one."""
    nonce: str
    error: str | None
    version: str = ""
    names: tuple[str, ...] = ()
    """SotW: `resource_names`; Delta: `resource_names_subscribe`."""
    unsubscribed: tuple[str, ...] = ()
    initial: Mapping[str, str] = attrs.field(factory=Map)
    """Delta's `initial_resource_versions`."""


@attrs.frozen
class Outgoing:
    """A response the stream decided to send, before the policy shapes it into a proto."""

    type: ResourceType
    nonce: str
    version: str
    resources: tuple[Resource, ...]
    removed: tuple[str, ...]


class StreamPolicy(Protocol):
    """What SotW and Delta do differently: read requests, apply subscriptions, shape responses.

    One instance per stream. The core calls nothing else of a policy, and a policy changes the
    core only through the subscription it returns.
    """

    mode: str

    def read(self, request: object) -> ClientRequest: ...

    def subscribe(
        self, stream: AdsStream, subscription: Subscription, request: ClientRequest, *, first: bool
    ) -> Subscription:
        """The subscription once the request's names (and what it says is held) count."""
        ...

    def pending(
        self, stream: AdsStream, subscription: Subscription, updates: list[Resource]
    ) -> list[Resource]:
        """Of the updates the core computed, those the stream believes it owes the client."""
        ...

    def removals(self, stream: AdsStream, subscription: Subscription) -> list[str]:
        """Names whose removal the client must be told about."""
        ...

    def compose(
        self,
        stream: AdsStream,
        subscription: Subscription,
        updates: list[Resource],
        removals: list[str],
    ) -> Outgoing:
        """Shape what must be sent into one response (SotW: full sets; Delta: differences)."""
        ...

    def to_proto(self, outgoing: Outgoing) -> object: ...

    def attached(self, stream: AdsStream, snapshot: Snapshot) -> None:
        """The stream now holds `snapshot`."""
        ...

    def committed(self, stream: AdsStream, outgoing: Outgoing) -> None:
        """`outgoing` is being sent."""
        ...

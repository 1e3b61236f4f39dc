"""A stream core as the make-before-break rows (`ordering.py`) read it: per type, never the
stream's own bookkeeping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from sut.xds.resources import Resource, ResourceType

if TYPE_CHECKING:
    from sut.xds.stream import AdsStream

__all__ = ["OrderingView"]


@attrs.frozen(eq=False)
class OrderingView:
    """The stream as `ordering.StreamView` reads it."""

    stream: AdsStream

    def opened(self, resource_type: ResourceType) -> bool:
        return self.stream.subscription(resource_type).opened

    def in_flight(self, resource_type: ResourceType) -> bool:
        return self.stream.subscription(resource_type).in_flight is not None

    def updates(self, resource_type: ResourceType) -> Sequence[Resource]:
        return self.stream.updates(self.stream.subscription(resource_type))

    def removals(self, resource_type: ResourceType) -> Sequence[str]:
        return self.stream.policy.removals(self.stream, self.stream.subscription(resource_type))

    def held(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        return self.stream.subscription(resource_type).known

    def marked(self, resource_type: ResourceType) -> frozenset[str]:
        return self.stream.subscription(resource_type).resend

    def served(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        return self.stream.existing(resource_type) if self.stream.snapshot else {}

    def current(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        snapshot = self.stream.snapshot
        return snapshot.of_type(resource_type) if snapshot else {}

    def wanted(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        subscription, current = self.stream.subscription(resource_type), self.current(resource_type)
        if subscription.wildcard:
            return current
        return {name: current[name] for name in subscription.subscribed if name in current}

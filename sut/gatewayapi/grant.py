"""ReferenceGrant: the namespace owning a target allows references to it from another one."""

from __future__ import annotations

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.meta import ObjectKey, ObjectMeta, namespaced
from sut.gatewayapi.schema import as_tuple, items, length

__all__ = ["ReferenceGrant", "ReferenceGrantFrom", "ReferenceGrantTo"]

_GROUP = length(0, 253)  # required, but "" is the core group
_KIND = length(1, 63)


@attrs.frozen
class ReferenceGrantFrom:
    group: str = attrs.field(validator=_GROUP)
    kind: str = attrs.field(validator=_KIND)
    namespace: str = attrs.field(validator=length(1, 63))


@attrs.frozen
class ReferenceGrantTo:
    group: str = attrs.field(validator=_GROUP)
    kind: str = attrs.field(validator=_KIND)
    name: str | None = None


@attrs.frozen
class ReferenceGrant:
    metadata: ObjectMeta = attrs.field(validator=namespaced)
    from_: tuple[ReferenceGrantFrom, ...] = attrs.field(converter=as_tuple, validator=items(1, 16))
    to: tuple[ReferenceGrantTo, ...] = attrs.field(converter=as_tuple, validator=items(1, 16))

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def permits(
        self, from_group: str, from_kind: str, from_namespace: str, to: ReferenceGrantTo
    ) -> bool:
        allowed_from = any(
            (item.group, item.kind, item.namespace) == (from_group, from_kind, from_namespace)
            for item in self.from_
        )
        allowed_to = any(
            (item.group, item.kind) == (to.group, to.kind) and item.name in (None, to.name)
            for item in self.to
        )
        return allowed_from and allowed_to


decode.shape(ReferenceGrant, computed=("metadata",))

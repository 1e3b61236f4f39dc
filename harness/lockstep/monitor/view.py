"""What one xDS client holds and asks for, per stream and type, as the wire shows it.

The monitor rebuilds the client's side of each stream from the messages alone:

- a subscription is what the requests say (SotW: the latest `resource_names`; Delta: the
  subscribes and unsubscribes so far), with the legacy wildcard rule of `xds_protocol.rst`
  ("How the client specifies what resources to return"): a type whose requests never named a
  resource is a wildcard subscription;
- what the client holds is what was delivered earlier on the same stream and not NACKed, plus
  what it listed in `initial_resource_versions`; a SotW Listener or Cluster response replaces
  the whole set, every other response adds or replaces what it names, Delta `removed_resources`
  and unsubscribes take names away;
- an obligation is a subscription the server has not answered yet.

Nothing here judges; the rules (`rules.py`) read these views.
"""

from __future__ import annotations

import attrs

from harness.lockstep.monitor.messages import (
    CLUSTER,
    LISTENER,
    StreamKey,
    WireResource,
    XdsResponse,
)

__all__ = ["FULL_STATE_TYPES", "Nack", "Obligation", "Pending", "StreamView", "TypeView"]

FULL_STATE_TYPES = frozenset({LISTENER, CLUSTER})
"""SotW Listener and Cluster responses carry the whole set: absence means deletion."""


@attrs.define
class Obligation:
    """A subscription waiting for its answer."""

    name: str | None
    """None: a wildcard subscription, answered by any response of its type."""
    since: float
    reported_version: str | None = None
    """Delta: the version the client said it holds (initial_resource_versions)."""


@attrs.define
class Pending:
    """A response delivered and not yet ACKed or NACKed, with what it replaced."""

    response: XdsResponse
    previous: dict[str, WireResource | None]
    """For each name the response touched, what the client held before (None: nothing)."""
    previous_set: dict[str, WireResource] | None = None
    """SotW Listener/Cluster: the whole set the response replaced."""


@attrs.frozen
class Nack:
    at: float
    response: XdsResponse
    detail: str
    subscribed: frozenset[str]
    """The names of the type subscribed when the NACK arrived."""


@attrs.define
class TypeView:
    type_url: str
    opened: bool = False
    explicit: bool = False
    """The client named a resource at some point (no legacy wildcard any more)."""
    wildcard: bool = False
    subscribed: set[str] = attrs.Factory(set)
    subscribed_at: dict[str, float] = attrs.Factory(dict)
    """When each subscribed name was (last) added."""
    ever_subscribed: set[str] = attrs.Factory(set)
    recent: set[str] = attrs.Factory(set)
    """Names subscribed at some point since the previous response of this type."""
    held: dict[str, WireResource] = attrs.Factory(dict)
    reported: dict[str, str] = attrs.Factory(dict)
    """Delta initial_resource_versions: name -> version the client said it holds."""
    obligations: dict[str | None, Obligation] = attrs.Factory(dict)

    def subscribe(self, names: set[str], at: float) -> set[str]:
        """Add names to the subscription; returns the ones that are new."""
        added = names - self.subscribed
        for name in names:
            self.subscribed_at.setdefault(name, at)
        for name in added:
            self.subscribed_at[name] = at
        self.subscribed |= added
        self.ever_subscribed |= names
        self.recent |= names
        return added

    def unsubscribe(self, names: set[str]) -> None:
        """The client loses interest: it forgets what it held of those names."""
        for name in names:
            self.subscribed.discard(name)
            self.subscribed_at.pop(name, None)
            self.held.pop(name, None)
            self.reported.pop(name, None)
            self.obligations.pop(name, None)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.subscribed


@attrs.define
class StreamView:
    key: StreamKey
    delta: bool
    lifetime: int
    opened_at: float
    node_id: str = ""
    types: dict[str, TypeView] = attrs.Factory(dict)
    nonces: set[str] = attrs.Factory(set)
    pending: dict[str, Pending] = attrs.Factory(dict)
    nacks: list[Nack] = attrs.Factory(list)
    ended: bool = False

    def of(self, type_url: str) -> TypeView:
        view = self.types.get(type_url)
        if view is None:
            view = self.types[type_url] = TypeView(type_url)
        return view

    def deliver(self, response: XdsResponse) -> Pending:
        """The client now holds what `response` carries (until it NACKs it)."""
        view = self.of(response.type_url)
        pending = Pending(response, {})
        if not response.delta and response.type_url in FULL_STATE_TYPES:
            pending.previous_set = dict(view.held)
            view.held = {item.name: item for item in response.resources}
        else:
            for item in response.resources:
                pending.previous[item.name] = view.held.get(item.name)
                if item.body is None:
                    view.held.pop(item.name, None)  # Delta: "does not exist"
                else:
                    view.held[item.name] = item
            for name in response.removed:
                pending.previous[name] = view.held.pop(name, None)
        for name in (*(item.name for item in response.resources), *response.removed):
            view.reported.pop(name, None)
        view.recent = set(view.subscribed)
        self.pending[response.nonce] = pending
        return pending

    def settle(
        self, nonce: str, rejected: bool, kept: frozenset[str] = frozenset()
    ) -> Pending | None:
        """An ACK or NACK of the response with `nonce`; a NACK puts back what the client held,
        except the names in `kept` (resources a partly applied SotW response left in place)."""
        pending = self.pending.pop(nonce, None)
        if pending is None or not rejected:
            return pending
        view = self.of(pending.response.type_url)
        if pending.previous_set is not None:
            restored = dict(pending.previous_set)
            for item in pending.response.resources:
                if item.name in kept:
                    restored[item.name] = item
            view.held = restored
            return pending
        for name, before in pending.previous.items():
            if before is None:
                view.held.pop(name, None)
            else:
                view.held[name] = before
        return pending

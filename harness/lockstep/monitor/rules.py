"""The xDS protocol rules the monitor judges, each with the strength the specification gives it.

Sources: `api-docs/xds_protocol.rst` (sections named below), `envoy/service/discovery/v3/
discovery.proto` and `xds/core/v3/resource.proto`. A MUST fails `check`; a SHOULD fails only
under `--strict-protocol`. Every rule is judged from the wire alone (what the relay delivered),
plus what the harness itself published; never from the server's own records.

Each function here judges one message against the client's view (`view.py`) as it stood just
before the message, and returns what it broke, as plain sentences.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import attrs

from harness.lockstep.monitor.messages import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    TYPE_SHORT,
    References,
    WireResource,
    XdsResponse,
    references,
)
from harness.lockstep.monitor.view import FULL_STATE_TYPES, StreamView, TypeView
from harness.lockstep.verdict import Strength

__all__ = [
    "RULES",
    "IdentityMap",
    "Rule",
    "break_findings",
    "digest",
    "fingerprint",
    "make_findings",
    "nonce_findings",
    "removal_findings",
    "unasked_findings",
]


@attrs.frozen
class Rule:
    name: str
    strength: Strength
    section: str
    text: str


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "answered",
            Strength.MUST,
            'xds_protocol.rst "How the client specifies what resources to return" ("The'
            " management server must supply the requested resources if they exist ... must"
            ' resend any newly requested resources"), "Knowing When a Requested Resource Does'
            ' Not Exist" (Delta: removed_resources), "Subscribing to Resources" and'
            ' discovery.proto DeltaDiscoveryRequest ("the server must respond with all resources'
            " listed in resource_names_subscribe, even if it believes the client has the most"
            ' recent version")',
            "every name a client subscribes to is answered within the bound; the clock stops"
            " while the connection is held",
        ),
        Rule(
            "resource-identity",
            Strength.MUST,
            'xds/core/v3/resource.proto Resource.version ("It is illegal to have the same named'
            ' xDS resource name at a given version with different resource payloads");'
            ' xds_protocol.rst "ACK/NACK and resource type instance version" ("Whenever one'
            ' resource of that type changes, the version is changed")',
            "one (type, name, version) never carries two different contents within one server's"
            " lifetime",
        ),
        Rule(
            "resource-identity-across-restarts",
            Strength.SHOULD,
            'xds_protocol.rst "ACK/NACK and resource type instance version" ("the version for a'
            " resource type is not a property of an individual xDS stream but rather a property"
            ' of the resources themselves"; a reconnecting client reports the versions it'
            " holds)",
            "one (type, name, version) carries one content across control-plane restarts",
        ),
        Rule(
            "nothing-unasked",
            Strength.SHOULD,
            'xds_protocol.rst "How the client specifies what resources to return" ("The client'
            ' will silently ignore any supplied resources that were not explicitly requested");'
            ' discovery.proto DeltaDiscoveryRequest ("can also send updates for resources the'
            ' client has not subscribed to")',
            "a response to a non-wildcard subscription carries only names subscribed at some"
            " point since the previous response of that type on the stream",
        ),
        Rule(
            "nonce",
            Strength.MUST,
            'xds_protocol.rst "Basic Protocol Overview" ("All server responses will contain a'
            " nonce ... allows servers to determine which response a given request is"
            ' associated with"); discovery.proto DeltaDiscoveryResponse.nonce ("uniquely'
            ' reference a DeltaDiscoveryResponse ... The nonce is required")',
            "every response carries a nonce not used before on its stream",
        ),
        Rule(
            "nack-resend",
            Strength.MUST,
            'xds_protocol.rst "ACK/NACK and resource type instance version" (NACK keeps the'
            ' previous version) and "When to send an update" ("should only send updates ...'
            ' when the resources ... have changed"); BUGS.md nack-loop',
            "after a NACK the stream sends the identical response again only if the published"
            " snapshot changed or the client newly subscribed to a name in it",
        ),
        Rule(
            "make-before-break",
            Strength.SHOULD,
            'xds_protocol.rst "Eventual consistency considerations" ("sequencing of updates'
            " should follow a make before break model ... the management plane must ensure that"
            " clusters referenced by a route are in place, before pushing the updates for a"
            ' route"; "Stale CDS clusters and related EDS endpoints (ones no longer being'
            ' referenced) can then be removed"); on one ADS stream, order is enough',
            "a RouteConfiguration names only Clusters the client holds or receives before it; a"
            " Cluster, ClusterLoadAssignment or RouteConfiguration is removed only once nothing"
            " the client holds names it",
        ),
        Rule(
            "removals",
            Strength.SHOULD,
            'discovery.proto DeltaDiscoveryResponse.removed_resources ("Resources names of'
            ' resources that have be deleted and to be removed from the xDS Client"),'
            ' xds_protocol.rst "Deleting Resources"',
            "removed_resources names only resources the client held (initial_resource_versions"
            " included) or subscribed to at some point on the stream",
        ),
        Rule(
            "nack",
            Strength.MUST,
            "routeproof: the harness publishes nothing invalid except on purpose",
            "Envoy NACKs only responses carrying content the harness made invalid (resending it"
            " is rule nack-resend)",
        ),
    )
}


def digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def fingerprint(response: XdsResponse) -> tuple[object, ...]:
    """What makes two responses identical to the client: type, contents and removals."""
    return (
        response.type_url,
        tuple(
            sorted(
                (item.name, digest(item.body) if item.body is not None else "")
                for item in response.resources
            )
        ),
        tuple(sorted(response.removed)),
    )


def nonce_findings(stream: StreamView, response: XdsResponse) -> list[str]:
    """Rule `nonce` (MUST; xds_protocol.rst "Basic Protocol Overview", discovery.proto
    DeltaDiscoveryResponse.nonce): a nonce is how a request names the response it settles, so
    one reused on a stream makes an ACK ambiguous."""
    if not response.nonce:
        return [f"{response.type_short} response without a nonce"]
    if response.nonce in stream.nonces:
        return [f"{response.type_short} response reuses nonce {response.nonce!r} on its stream"]
    return []


@attrs.define
class IdentityMap:
    """Rules `resource-identity` (MUST within one server's lifetime; xds/core/v3/resource.proto
    Resource.version) and `resource-identity-across-restarts` (SHOULD; xds_protocol.rst
    "ACK/NACK and resource type instance version"): (type, name, version) -> content digest."""

    seen: dict[tuple[str, str, str], tuple[str, int]] = attrs.Factory(dict)

    def record(self, lifetime: int, resource: WireResource) -> tuple[str, Strength] | None:
        if resource.body is None:
            return None
        key = (resource.type_url, resource.name, resource.version)
        content = digest(resource.body)
        first = self.seen.setdefault(key, (content, lifetime))
        if first[0] == content:
            return None
        self.seen[key] = (content, lifetime)
        kind = TYPE_SHORT.get(resource.type_url, resource.type_url)
        what = (
            f"{kind} {resource.name!r} at version {resource.version!r} carries other content"
            f" than it did before"
        )
        if first[1] == lifetime:
            return (what + " (same control-plane lifetime)", Strength.MUST)
        return (
            what + f" (in control-plane lifetime {first[1]}; now {lifetime})",
            Strength.SHOULD,
        )


def unasked_findings(view: TypeView, response: XdsResponse) -> list[str]:
    """Rule `nothing-unasked` (SHOULD; xds_protocol.rst "How the client specifies what
    resources to return"): only for a non-wildcard subscription. A response may cross a newer
    request on the wire, so any name subscribed since the previous response counts."""
    if view.wildcard:
        return []
    asked = view.recent | view.subscribed
    extra = sorted({item.name for item in response.resources} - asked)
    if not extra:
        return []
    return [
        f"{response.type_short} response carries {', '.join(extra[:5])}"
        f"{' ...' if len(extra) > 5 else ''}, never asked for on this stream since the previous"
        f" {response.type_short} response"
    ]


Resolver = Callable[[str, str, str | WireResource], References | None]
"""References of what the client holds under (type, name): a delivered resource, or a version
it reported (initial_resource_versions), whose content the monitor may have seen elsewhere."""


def _held_references(
    stream: StreamView, type_url: str, resolve: Resolver
) -> Iterable[tuple[str, References]]:
    view = stream.types.get(type_url)
    if view is None:
        return
    for name, resource in view.held.items():
        found = resolve(type_url, name, resource)
        if found is not None:
            yield name, found
    for name, version in view.reported.items():
        if name in view.held:
            continue
        found = resolve(type_url, name, version)
        if found is not None:
            yield name, found


def make_findings(stream: StreamView, response: XdsResponse) -> list[str]:
    """Rule `make-before-break`, make half (SHOULD; xds_protocol.rst "Eventual consistency
    considerations"): a RouteConfiguration names only Clusters the client holds, or received
    earlier on this stream (Listeners and Clusters may arrive before what they name: they
    warm)."""
    if response.type_url != ROUTE:
        return []
    clusters = stream.types.get(CLUSTER)
    if clusters is None or not clusters.opened:
        return []  # the client does not fetch Clusters on this stream
    held = set(clusters.held) | set(clusters.reported)
    problems = []
    for item in response.resources:
        missing = sorted(references(item).clusters - held)
        if missing:
            problems.append(
                f"RouteConfiguration {item.name!r} names Cluster(s) {', '.join(missing[:4])}"
                " the client does not hold yet"
            )
    return problems


_PARENTS = {
    CLUSTER: (ROUTE, "clusters"),
    ROUTE: (LISTENER, "routes"),
    ENDPOINT: (CLUSTER, "endpoints"),
}


def removed_names(stream: StreamView, response: XdsResponse) -> list[str]:
    """What the response takes away from the client: Delta removals; for a SotW Listener or
    Cluster response, every held name it leaves out."""
    if response.delta:
        return list(response.removed)
    if response.type_url not in FULL_STATE_TYPES:
        return []
    view = stream.types.get(response.type_url)
    present = {item.name for item in response.resources}
    return sorted(name for name in (view.held if view else {}) if name not in present)


def _reachable_routes(stream: StreamView, resolve: Resolver) -> set[str] | None:
    """RouteConfigurations some Listener the client holds names (None: Listeners are not
    fetched on this stream, so every held RouteConfiguration counts)."""
    listeners = stream.types.get(LISTENER)
    if listeners is None or not listeners.opened:
        return None
    return {
        route for _, found in _held_references(stream, LISTENER, resolve) for route in found.routes
    }


def break_findings(
    stream: StreamView, response: XdsResponse, removed: Iterable[str], resolve: Resolver
) -> list[str]:
    """Rule `make-before-break`, break half (SHOULD; xds_protocol.rst "Eventual consistency
    considerations": stale Clusters and endpoints "no longer being referenced" go last): a
    Cluster goes only once no RouteConfiguration the client holds and uses names it; a
    RouteConfiguration once no Listener does; a ClusterLoadAssignment once no Cluster does."""
    parent = _PARENTS.get(response.type_url)
    if parent is None:
        return []
    parent_type, field = parent
    removed = set(removed)
    problems = []
    in_use = _reachable_routes(stream, resolve) if parent_type == ROUTE else None
    for name, found in _held_references(stream, parent_type, resolve):
        if in_use is not None and name not in in_use:
            continue  # no Listener the client holds uses it: it is on its way out too
        still = sorted(removed & getattr(found, field))
        if still:
            problems.append(
                f"{response.type_short} removes {', '.join(still[:4])} while the client still"
                f" holds {TYPE_SHORT[parent_type]} {name!r}, which names it"
            )
    return problems


def removal_findings(view: TypeView, response: XdsResponse) -> list[str]:
    """Rule `removals` (SHOULD; discovery.proto DeltaDiscoveryResponse.removed_resources,
    xds_protocol.rst "Deleting Resources"), Delta only: what is removed is what the client
    held, reported, or asked for on this stream."""
    if not response.delta:
        return []
    known = set(view.held) | set(view.reported) | view.ever_subscribed
    strangers = sorted(set(response.removed) - known)
    if not strangers:
        return []
    return [
        f"{response.type_short} removed_resources names {', '.join(strangers[:5])}, which the"
        " client never held nor subscribed to on this stream"
    ]

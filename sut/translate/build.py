"""Stage 1: Gateway API resources -> IR and status, exactly as the Gateway API spec says.

Rules of this module (each cites the spec text it implements in `apis/v1`):

- Served Gateways: those of `options.gateway_class` (all when None).
- Listener validity: protocol HTTP/HTTPS (else UnsupportedProtocol); listeners of one Gateway on
  one port with different protocols are Conflicted (ProtocolConflict) and not accepted; HTTPS
  needs `tls` with at least one valid certificate (InvalidCertificateRef / RefNotPermitted);
  allowedRoutes.kinds other than HTTPRoute give InvalidRouteKinds. Without
  `bind_port_zero`, a later Gateway (oldest first, then namespace/name) cannot reuse a port
  another served Gateway already listens on: PortUnavailable.
- Attachment of a parentRef: listeners selected by sectionName/port (else NoMatchingParent),
  allowing the route's kind and namespace (else NotAllowedByListeners), with intersecting
  hostnames (else NoMatchingListenerHostname). `attachedRoutes` counts the routes Accepted on
  the listener (ListenerStatus.AttachedRoutes, Gateway API v1.5: "The AttachedRoutes number
  represents the number of Routes with the Accepted condition set to "True" that have been
  attached to this Listener. Routes with any other value for the Accepted condition MUST NOT be
  included in this count."): a route counts on each listener it was accepted on through a
  parentRef whose Accepted is True, which needs a hostname intersecting that listener's
  (conformance HTTPRouteHostnameIntersection). The listener's own Accepted condition does not
  matter ("MUST be set for Listeners, even if the Accepted condition of an individual Listener
  is set to "False"").
- Rules that cannot be implemented (unsupported filter or field, an RE2-invalid regex, a header
  modifier Envoy refuses) are dropped: the route stays Accepted with PartiallyInvalid
  ("Dropped Rule ..."); a route whose every rule is dropped is Accepted=False UnsupportedValue.
- Backends: non-Service kinds are InvalidKind; cross-namespace without a ReferenceGrant is
  RefNotPermitted; a missing Service or port is BackendNotFound. Invalid backends keep their
  weight share, which answers 500; a rule without traffic-carrying valid backends answers 500.
- Listener Isolation: on one port, a route hostname that a more specific listener covers is
  dropped from the less specific listener, and (HTTP, shared RouteConfiguration) every listener
  hostname gets a virtual host, so hosts of a specific listener never reach a broader one.
- Misdirected requests (Listener.Hostname): on an HTTPS filter chain, the hostnames of the
  port's other listeners answer 421, the chain's own hostname keeps 404 for unrouted hosts.
- Precedence inside a virtual host (HTTPRouteRule.Matches doc): Exact path, then
  RegularExpression (Envoy Gateway's choice; the spec leaves it open), then PathPrefix; longer
  path values first (PathPrefix "/" counts 0); a method match; more header matches; more query
  matches; then the oldest route (creationTimestamp; routes without one come after), then
  "namespace/name" alphabetically, then rule order, then match order.
- BackendTrafficPolicies (see `sut.translate.policies`) set the clusters of the routes they
  cover; without one, clusters keep the defaults.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Iterable, Sequence

import attrs

from sut.gatewayapi import (
    CORE_GROUP,
    GATEWAY_GROUP,
    BackendRef,
    Condition,
    Gateway,
    GatewayStatus,
    HeaderModifier,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteRule,
    HTTPRouteStatus,
    Listener,
    ListenerStatus,
    ObjectKey,
    ParentReference,
    Reason,
    Resources,
    RouteGroupKind,
    RouteMatch,
    RouteParentStatus,
    Secret,
    Statuses,
)
from sut.translate.hostnames import covers, more_specific, route_hostnames_on_listener
from sut.translate.ir import (
    IR,
    Cluster,
    ClusterSettings,
    DirectResponse,
    FilterChain,
    Forward,
    HeaderMutation,
    IRListener,
    PathRewrite,
    Redirect,
    Route,
    RouteAction,
    RouteConfig,
    RouteMatchIR,
    RouteSource,
    StringMatch,
    TLSCertificate,
    VirtualHost,
    WeightedBackend,
)
from sut.translate.options import TranslateOptions
from sut.translate.policies import resolve_backend_traffic_policies
from sut.translate.regex import check_regex, quote_regex

__all__ = ["build_ir", "precedence_key", "rewrite_regex_for_prefix"]

HTTPROUTE_KIND = RouteGroupKind(kind="HTTPRoute", group=GATEWAY_GROUP)
_SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")
_SUPPORTED_RULE_FILTERS = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
)
_SUPPORTED_BACKEND_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")
_FAR_FUTURE = datetime.datetime.max.replace(tzinfo=datetime.UTC)


# --------------------------------------------------------------------------- listener state


@attrs.define
class _ListenerState:
    gateway: Gateway
    spec: Listener
    supported_kinds: tuple[RouteGroupKind, ...] = ()
    accepted: Condition | None = None
    conflicted: Condition | None = None
    resolved_refs: Condition | None = None
    certificates: list[TLSCertificate] = attrs.Factory(list)
    attached: set[ObjectKey] = attrs.Factory(set)

    @property
    def ir_name(self) -> str:
        return f"{self.gateway.metadata.namespace}/{self.gateway.metadata.name}/{self.spec.name}"

    @property
    def is_accepted(self) -> bool:
        return self.accepted is not None and self.accepted.is_true

    @property
    def is_programmed(self) -> bool:
        if not self.is_accepted:
            return False
        return self.spec.protocol == "HTTP" or bool(self.certificates)


def _gateway_order(gateway: Gateway) -> tuple[datetime.datetime, ObjectKey]:
    return (gateway.metadata.creation_timestamp or _FAR_FUTURE, gateway.key)


def _evaluate_listeners(
    gateway: Gateway, resources: Resources, ports_taken: dict[int, ObjectKey] | None
) -> list[_ListenerState]:
    generation = gateway.metadata.generation
    states = [_ListenerState(gateway, spec) for spec in gateway.listeners]
    protocols_by_port: dict[int, set[str]] = {}
    for spec in gateway.listeners:
        protocols_by_port.setdefault(spec.port, set()).add(spec.protocol)
    for state in states:
        spec = state.spec
        state.supported_kinds, kinds_problem = _supported_kinds(spec)
        problems: list[tuple[str, str]] = []  # (reason, message) for Accepted=False
        if spec.protocol not in _SUPPORTED_PROTOCOLS:
            problems.append(
                (Reason.UNSUPPORTED_PROTOCOL, f"protocol {spec.protocol} is not supported")
            )
        if len(protocols_by_port[spec.port]) > 1:
            state.conflicted = Condition.of(
                Reason.CONFLICTED,
                True,
                Reason.PROTOCOL_CONFLICT,
                f"port {spec.port} is used with protocols "
                + ", ".join(sorted(protocols_by_port[spec.port])),
                generation,
            )
            problems.append((Reason.PROTOCOL_CONFLICT, "listener conflicts on its port"))
        if spec.protocol == "HTTPS" and spec.tls is None:
            problems.append((Reason.UNSUPPORTED_VALUE, "HTTPS listeners need tls settings"))
        if ports_taken is not None and spec.protocol in _SUPPORTED_PROTOCOLS:
            owner = ports_taken.setdefault(spec.port, gateway.key)
            if owner != gateway.key:
                problems.append(
                    (Reason.PORT_UNAVAILABLE, f"port {spec.port} is used by Gateway {owner}")
                )
        if problems:
            reason, message = problems[0]
            state.accepted = Condition.of(Reason.ACCEPTED, False, reason, message, generation)
        else:
            state.accepted = Condition.of(
                Reason.ACCEPTED, True, Reason.ACCEPTED, "listener accepted", generation
            )
        refs_problem = kinds_problem
        if spec.protocol == "HTTPS" and spec.tls is not None:
            state.certificates, cert_problem = _resolve_certificates(gateway, spec, resources)
            refs_problem = refs_problem or cert_problem
        if refs_problem is None:
            state.resolved_refs = Condition.of(
                Reason.RESOLVED_REFS, True, Reason.RESOLVED_REFS, "references resolved", generation
            )
        else:
            state.resolved_refs = Condition.of(
                Reason.RESOLVED_REFS, False, refs_problem[0], refs_problem[1], generation
            )
    return states


def _supported_kinds(spec: Listener) -> tuple[tuple[RouteGroupKind, ...], tuple[str, str] | None]:
    if spec.protocol not in _SUPPORTED_PROTOCOLS:
        return (), None
    if not spec.allowed_routes.kinds:
        return (HTTPROUTE_KIND,), None
    valid = tuple(kind for kind in spec.allowed_routes.kinds if kind == HTTPROUTE_KIND)
    invalid = [kind for kind in spec.allowed_routes.kinds if kind != HTTPROUTE_KIND]
    if invalid:
        names = ", ".join(f"{kind.group}/{kind.kind}" for kind in invalid)
        return valid, (Reason.INVALID_ROUTE_KINDS, f"route kinds not supported: {names}")
    return valid, None


def _resolve_certificates(
    gateway: Gateway, spec: Listener, resources: Resources
) -> tuple[list[TLSCertificate], tuple[str, str] | None]:
    assert spec.tls is not None
    certificates: list[TLSCertificate] = []
    problem: tuple[str, str] | None = None
    for ref in spec.tls.certificate_refs:
        namespace = ref.namespace or gateway.metadata.namespace
        found: tuple[str, str] | None = None
        if (ref.group, ref.kind) != (CORE_GROUP, "Secret"):
            found = (
                Reason.INVALID_CERTIFICATE_REF,
                f"certificateRef {ref.group}/{ref.kind} {ref.name} is not a core Secret",
            )
        elif not resources.reference_permitted(
            from_group=GATEWAY_GROUP,
            from_kind="Gateway",
            from_namespace=gateway.metadata.namespace,
            to_group=CORE_GROUP,
            to_kind="Secret",
            to_namespace=namespace,
            to_name=ref.name,
        ):
            found = (
                Reason.REF_NOT_PERMITTED,
                f"certificateRef to Secret {namespace}/{ref.name} is not permitted by any"
                " ReferenceGrant",
            )
        else:
            secret = resources.secret(namespace, ref.name)
            if secret is None:
                found = (Reason.INVALID_CERTIFICATE_REF, f"Secret {namespace}/{ref.name} not found")
            else:
                malformed = certificate_problem(secret)
                if malformed:
                    found = (Reason.INVALID_CERTIFICATE_REF, malformed)
                else:
                    certificates.append(
                        TLSCertificate(
                            name=f"{namespace}/{ref.name}",
                            certificate_chain=secret.get("tls.crt") or b"",
                            private_key=secret.get("tls.key") or b"",
                        )
                    )
        if found and problem is None:
            problem = found
    return certificates, problem


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----", re.DOTALL
)


def _der_sequence_ok(der: bytes) -> bool:
    """A DER SEQUENCE whose length field matches the data: the framing every cert/key has."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    length = der[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            return False
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    return offset + length == len(der)


def _pem_types(data: bytes) -> list[str]:
    types = []
    for match in _PEM_BLOCK.finditer(data):
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            return []
        if not _der_sequence_ok(der):
            return []
        types.append(match.group(1).decode())
    return types


def certificate_problem(secret: Secret) -> str | None:
    """Why a Secret cannot serve as a listener certificate (Envoy would NACK it), or None."""
    where = f"Secret {secret.metadata.namespace}/{secret.metadata.name}"
    if secret.type != "kubernetes.io/tls":
        return f"{where} has type {secret.type}, not kubernetes.io/tls"
    chain = secret.get("tls.crt")
    key = secret.get("tls.key")
    if not chain or not key:
        return f"{where} lacks tls.crt or tls.key"
    cert_types = _pem_types(chain)
    if not cert_types or any(kind != "CERTIFICATE" for kind in cert_types):
        return f"{where} tls.crt is not a PEM certificate chain"
    key_types = _pem_types(key)
    if len(key_types) != 1 or not key_types[0].endswith("PRIVATE KEY"):
        return f"{where} tls.key is not one PEM private key"
    return None


def _gateway_status(
    gateway: Gateway, states: Sequence[_ListenerState], served: bool
) -> GatewayStatus:
    generation = gateway.metadata.generation
    listeners = []
    for state in states:
        conditions = [state.accepted, state.resolved_refs]
        programmed = served and state.is_programmed
        conditions.append(
            Condition.of(
                Reason.PROGRAMMED,
                programmed,
                Reason.PROGRAMMED if programmed else Reason.INVALID,
                "listener programmed" if programmed else "listener is not served",
                generation,
            )
        )
        if state.conflicted is not None:
            conditions.append(state.conflicted)
        listeners.append(
            ListenerStatus(
                name=state.spec.name,
                supported_kinds=state.supported_kinds,
                attached_routes=len(state.attached),
                conditions=tuple(c for c in conditions if c is not None),
            )
        )
    invalid = [state.spec.name for state in states if not state.is_accepted]
    if gateway.addresses:
        accepted = Condition.of(
            Reason.ACCEPTED,
            False,
            Reason.UNSUPPORTED_ADDRESS,
            "spec.addresses is not supported",
            generation,
        )
    elif len(invalid) == len(states):
        accepted = Condition.of(
            Reason.ACCEPTED, False, Reason.LISTENERS_NOT_VALID, "no valid listener", generation
        )
    elif invalid:
        accepted = Condition.of(
            Reason.ACCEPTED,
            True,
            Reason.LISTENERS_NOT_VALID,
            "listeners not valid: " + ", ".join(invalid),
            generation,
        )
    else:
        accepted = Condition.of(
            Reason.ACCEPTED, True, Reason.ACCEPTED, "gateway accepted", generation
        )
    programmed = served and any(state.is_programmed for state in states)
    return GatewayStatus(
        gateway=gateway.key,
        conditions=(
            accepted,
            Condition.of(
                Reason.PROGRAMMED,
                programmed,
                Reason.PROGRAMMED if programmed else Reason.INVALID,
                "gateway programmed" if programmed else "no listener is served",
                generation,
            ),
        ),
        listeners=tuple(listeners),
    )


# --------------------------------------------------------------------------- rules


@attrs.frozen
class _RulePlan:
    """Everything about one rule that does not depend on the listener it lands on."""

    index: int
    rule: HTTPRouteRule
    problem: str | None
    action: RouteAction | None  # Forward or DirectResponse; None for a redirect
    request_headers: HeaderMutation
    response_headers: HeaderMutation
    clusters: tuple[Cluster, ...]


def _mutation(modifier: HeaderModifier | None) -> HeaderMutation:
    if modifier is None:
        return HeaderMutation()
    return HeaderMutation(
        set=tuple((header.name, header.value) for header in modifier.set),
        add=tuple((header.name, header.value) for header in modifier.add),
        remove=tuple(modifier.remove),
    )


def _modifier_problem(modifier: HeaderModifier | None) -> str | None:
    if modifier is None:
        return None
    names = [h.name.lower() for h in (*modifier.set, *modifier.add)] + [
        name.lower() for name in modifier.remove
    ]
    if "host" in names:
        return "header modifiers cannot change the Host header (Envoy refuses it); use URLRewrite"
    if len(names) != len(set(names)):
        return "a header modifier names one header in more than one action"
    return None


def _filter_of(filters: Iterable[HTTPRouteFilter], kind: str) -> HTTPRouteFilter | None:
    for item in filters:
        if item.type == kind:
            return item
    return None


def rewrite_regex_for_prefix(prefix: str) -> str:
    """The regex that eats a path prefix and the slashes after it: `^/foo/*`."""
    return "^" + quote_regex(prefix) + "/*"


def _path_rewrite_problem(rewrite: PathRewrite | None, options: TranslateOptions) -> str | None:
    if rewrite is None or rewrite.kind != "ReplacePrefixMatch":
        return None
    if rewrite.value.rstrip("/") or not rewrite.matched_prefix.rstrip("/"):
        return None
    verdict = check_regex(
        rewrite_regex_for_prefix(rewrite.matched_prefix.rstrip("/")),
        options.max_regex_program_size,
    )
    if not verdict.ok:
        return f"ReplacePrefixMatch cannot be expressed for this prefix: {verdict.error}"
    return None


def _path_rewrite(rule: HTTPRouteRule, modifier_kind: str, value: str) -> PathRewrite:
    prefix = rule.matches[0].path.value if modifier_kind == "ReplacePrefixMatch" else "/"
    return PathRewrite(kind=modifier_kind, value=value, matched_prefix=prefix)


def _rule_problem(rule: HTTPRouteRule, options: TranslateOptions) -> str | None:
    if rule.unsupported_fields:
        return f"rule fields not supported: {', '.join(rule.unsupported_fields)}"
    for item in rule.filters:
        if item.type not in _SUPPORTED_RULE_FILTERS:
            return f"filter type {item.type} is not supported"
        problem = _modifier_problem(item.request_header_modifier) or _modifier_problem(
            item.response_header_modifier
        )
        if problem:
            return problem
    for ref in rule.backend_refs:
        for item in ref.filters:
            if item.type not in _SUPPORTED_BACKEND_FILTERS:
                return f"filter type {item.type} is not supported on a backendRef"
            problem = _modifier_problem(item.request_header_modifier) or _modifier_problem(
                item.response_header_modifier
            )
            if problem:
                return problem
    for index, match in enumerate(rule.matches):
        checks: list[tuple[str, str]] = []
        if match.path.type == "RegularExpression":
            checks.append(("path", match.path.value))
        checks += [
            (f"header {h.name}", h.value) for h in match.headers if h.type == "RegularExpression"
        ]
        checks += [
            (f"query param {q.name}", q.value)
            for q in match.query_params
            if q.type == "RegularExpression"
        ]
        for what, pattern in checks:
            verdict = check_regex(pattern, options.max_regex_program_size)
            if not verdict.ok:
                return f"match {index} {what} regex {pattern!r}: {verdict.error}"
    for item in rule.filters:
        modifier = None
        if item.request_redirect is not None:
            modifier = item.request_redirect.path
        if item.url_rewrite is not None:
            modifier = item.url_rewrite.path
        if modifier is not None:
            problem = _path_rewrite_problem(
                _path_rewrite(rule, modifier.type, modifier.value), options
            )
            if problem:
                return problem
    return None


@attrs.frozen
class _BackendVerdict:
    ref: BackendRef
    namespace: str
    problem: tuple[str, str] | None  # (reason, message)


def _judge_backend(route: HTTPRoute, ref: BackendRef, resources: Resources) -> _BackendVerdict:
    namespace = ref.namespace or route.metadata.namespace
    where = f"{ref.group or 'core'}/{ref.kind} {namespace}/{ref.name}"
    if not ref.is_service:
        return _BackendVerdict(ref, namespace, (Reason.INVALID_KIND, f"{where}: unsupported kind"))
    if not resources.reference_permitted(
        from_group=GATEWAY_GROUP,
        from_kind="HTTPRoute",
        from_namespace=route.metadata.namespace,
        to_group=CORE_GROUP,
        to_kind="Service",
        to_namespace=namespace,
        to_name=ref.name,
    ):
        return _BackendVerdict(
            ref,
            namespace,
            (Reason.REF_NOT_PERMITTED, f"{where}: not permitted by any ReferenceGrant"),
        )
    service = resources.service(namespace, ref.name)
    if service is None:
        return _BackendVerdict(ref, namespace, (Reason.BACKEND_NOT_FOUND, f"{where}: not found"))
    assert ref.port is not None
    if service.port(ref.port) is None:
        return _BackendVerdict(
            ref, namespace, (Reason.BACKEND_NOT_FOUND, f"{where}: no TCP port {ref.port}")
        )
    return _BackendVerdict(ref, namespace, None)


def _plan_rule(  # noqa: PLR0917 - one call site, every argument is distinct
    route: HTTPRoute,
    index: int,
    rule: HTTPRouteRule,
    verdicts: Sequence[_BackendVerdict],
    resources: Resources,
    options: TranslateOptions,
) -> _RulePlan:
    problem = _rule_problem(rule, options)
    request = _filter_of(rule.filters, "RequestHeaderModifier")
    response = _filter_of(rule.filters, "ResponseHeaderModifier")
    request_headers = _mutation(request.request_header_modifier if request else None)
    response_headers = _mutation(response.response_header_modifier if response else None)
    if problem is not None or _filter_of(rule.filters, "RequestRedirect") is not None:
        return _RulePlan(index, rule, problem, None, request_headers, response_headers, ())
    rule_cluster = f"httproute/{route.metadata.namespace}/{route.metadata.name}/rule/{index}"
    carrying = [(j, v) for j, v in enumerate(verdicts) if v.problem is None and v.ref.weight > 0]
    invalid_weight = sum(v.ref.weight for v in verdicts if v.problem is not None)
    if not carrying:
        return _RulePlan(
            index, rule, None, DirectResponse(500), request_headers, response_headers, ()
        )
    single = len(carrying) == 1 and not carrying[0][1].ref.filters
    backends: list[WeightedBackend] = []
    clusters: list[Cluster] = []
    named: set[str] = set()
    for j, verdict in carrying:
        ref = verdict.ref
        assert ref.port is not None
        # A Cluster is named by where it sends traffic, not by its place in the rule: a rule
        # that moves to another Service gets another Cluster, so while the proxy still routes
        # by the old rule, the old name still leads to the old Service (make-before-break);
        # reusing the name would send old matches to new backends for a moment.
        name = f"{rule_cluster}/backend/{verdict.namespace}/{ref.name}/{ref.port}"
        if name in named:
            name = f"{name}/{j}"
        named.add(name)
        clusters.append(
            Cluster(
                name=name,
                service=ObjectKey(verdict.namespace, ref.name),
                service_port=ref.port,
                endpoints=resources.service_endpoints(verdict.namespace, ref.name, ref.port),
            )
        )
        backend_request = _filter_of(ref.filters, "RequestHeaderModifier")
        backend_response = _filter_of(ref.filters, "ResponseHeaderModifier")
        backends.append(
            WeightedBackend(
                cluster=name,
                weight=ref.weight,
                request_headers=_mutation(
                    backend_request.request_header_modifier if backend_request else None
                ),
                response_headers=_mutation(
                    backend_response.response_header_modifier if backend_response else None
                ),
            )
        )
    rewrite = _filter_of(rule.filters, "URLRewrite")
    rewrite_path = None
    rewrite_hostname = None
    if rewrite is not None and rewrite.url_rewrite is not None:
        rewrite_hostname = rewrite.url_rewrite.hostname
        if rewrite.url_rewrite.path is not None:
            modifier = rewrite.url_rewrite.path
            rewrite_path = _path_rewrite(rule, modifier.type, modifier.value)
    action = Forward(
        backends=tuple(backends),
        invalid_weight=invalid_weight,
        rewrite_hostname=rewrite_hostname,
        rewrite_path=rewrite_path,
        single_cluster=single,
    )
    return _RulePlan(index, rule, None, action, request_headers, response_headers, tuple(clusters))


# --------------------------------------------------------------------------- matches


def _string_match(kind: str, value: str) -> StringMatch:
    return StringMatch(kind=kind, value=value)


def _match_ir(match: RouteMatch) -> RouteMatchIR:
    headers: dict[str, StringMatch] = {}
    for header in match.headers:  # "only the first entry with an equivalent name" counts
        headers.setdefault(header.name.lower(), _string_match(header.type, header.value))
    queries: dict[str, StringMatch] = {}
    for query in match.query_params:
        queries.setdefault(query.name, _string_match(query.type, query.value))
    return RouteMatchIR(
        path=_string_match(match.path.type, match.path.value),
        headers=tuple(headers.items()),
        query_params=tuple(queries.items()),
        method=match.method,
    )


_PATH_RANK = {"Exact": 2, "RegularExpression": 1, "PathPrefix": 0}


def precedence_key(
    match: RouteMatchIR, created: datetime.datetime | None, source: RouteSource
) -> tuple[object, ...]:
    """Sort key (ascending = higher precedence) for the routes of one virtual host."""
    path = match.path
    length = 0 if (path.kind == "PathPrefix" and path.value == "/") else len(path.value)
    return (
        -_PATH_RANK[path.kind],
        -length,
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query_params),
        created or _FAR_FUTURE,
        str(source.route),
        source.rule,
        source.match,
    )


# --------------------------------------------------------------------------- routes


@attrs.define
class _Attachment:
    route: HTTPRoute
    listener: _ListenerState
    hostnames: set[str]


@attrs.frozen
class _RouteResult:
    status: HTTPRouteStatus
    plans: tuple[_RulePlan, ...]
    attachments: tuple[tuple[_ListenerState, tuple[str, ...]], ...]


def _route_result(
    route: HTTPRoute,
    listeners_by_gateway: dict[ObjectKey, list[_ListenerState]],
    resources: Resources,
    options: TranslateOptions,
) -> _RouteResult:
    generation = route.metadata.generation
    verdicts_by_rule = [
        [_judge_backend(route, ref, resources) for ref in rule.backend_refs] for rule in route.rules
    ]
    plans = tuple(
        _plan_rule(route, index, rule, verdicts_by_rule[index], resources, options)
        for index, rule in enumerate(route.rules)
    )
    first_problem = next(
        (v.problem for verdicts in verdicts_by_rule for v in verdicts if v.problem), None
    )
    if first_problem is None:
        resolved = Condition.of(
            Reason.RESOLVED_REFS, True, Reason.RESOLVED_REFS, "references resolved", generation
        )
    else:
        resolved = Condition.of(
            Reason.RESOLVED_REFS, False, first_problem[0], first_problem[1], generation
        )
    dropped = [plan for plan in plans if plan.problem is not None]
    parents: list[RouteParentStatus] = []
    attachments: list[tuple[_ListenerState, tuple[str, ...]]] = []
    for ref in route.parent_refs:
        if (ref.group, ref.kind) != (GATEWAY_GROUP, "Gateway"):
            continue
        gateway_key = ObjectKey(ref.namespace or route.metadata.namespace, ref.name)
        states = listeners_by_gateway.get(gateway_key)
        if states is None:
            continue  # not a Gateway we serve: its controller writes this status
        accepted, attached = _attach(route, ref, states, resources, generation)
        if accepted.is_true and len(dropped) == len(plans):
            accepted = Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.UNSUPPORTED_VALUE,
                "all rules are invalid: "
                + "; ".join(f"rule {p.index}: {p.problem}" for p in dropped),
                generation,
            )
        else:
            attachments.extend(attached)
        conditions = [accepted, resolved]
        if accepted.is_true and dropped:
            conditions.append(
                Condition.of(
                    Reason.PARTIALLY_INVALID,
                    True,
                    Reason.UNSUPPORTED_VALUE,
                    "Dropped Rule(s) " + "; ".join(f"{p.index}: {p.problem}" for p in dropped),
                    generation,
                )
            )
        parents.append(RouteParentStatus(parent_ref=ref, conditions=tuple(conditions)))
    return _RouteResult(
        status=HTTPRouteStatus(route=route.key, parents=tuple(parents)),
        plans=plans,
        attachments=tuple(attachments),
    )


def _namespace_allowed(state: _ListenerState, route: HTTPRoute, resources: Resources) -> bool:
    namespaces = state.spec.allowed_routes.namespaces
    if namespaces.from_ == "All":
        return True
    if namespaces.from_ == "Same":
        return route.metadata.namespace == state.gateway.metadata.namespace
    assert namespaces.selector is not None
    return namespaces.selector.matches(resources.namespace_labels(route.metadata.namespace))


def _attach(
    route: HTTPRoute,
    ref: ParentReference,
    states: list[_ListenerState],
    resources: Resources,
    generation: int,
) -> tuple[Condition, list[tuple[_ListenerState, tuple[str, ...]]]]:
    selected = [
        state
        for state in states
        if (ref.section_name is None or state.spec.name == ref.section_name)
        and (ref.port is None or state.spec.port == ref.port)
    ]
    if not selected:
        return (
            Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.NO_MATCHING_PARENT,
                "no listener matches the parentRef's sectionName/port",
                generation,
            ),
            [],
        )
    allowed = [
        state
        for state in selected
        if HTTPROUTE_KIND in state.supported_kinds and _namespace_allowed(state, route, resources)
    ]
    if not allowed:
        return (
            Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.NOT_ALLOWED_BY_LISTENERS,
                "no selected listener allows this route's kind and namespace",
                generation,
            ),
            [],
        )
    attached: list[tuple[_ListenerState, tuple[str, ...]]] = []
    for state in allowed:
        hostnames = route_hostnames_on_listener(state.spec.hostname, route.hostnames)
        if hostnames:
            attached.append((state, hostnames))
    if not attached:
        return (
            Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.NO_MATCHING_LISTENER_HOSTNAME,
                "no listener hostname intersects the route's hostnames",
                generation,
            ),
            [],
        )
    return (
        Condition.of(Reason.ACCEPTED, True, Reason.ACCEPTED, "route accepted", generation),
        attached,
    )


# --------------------------------------------------------------------------- assembly


def _redirect(
    rule: HTTPRouteRule, listener: Listener, domain: str
) -> tuple[Redirect, HTTPRouteFilter]:
    item = _filter_of(rule.filters, "RequestRedirect")
    assert item is not None and item.request_redirect is not None
    spec = item.request_redirect
    listener_scheme = "https" if listener.protocol == "HTTPS" else "http"
    scheme = spec.scheme or listener_scheme
    # HTTPRequestRedirectFilter.Port: the filter's port, else the scheme's well-known port when
    # a scheme is given, else the Gateway listener's port (never Envoy's own bound port).
    if spec.port is not None:
        port = spec.port
    elif spec.scheme is not None:
        port = 443 if spec.scheme == "https" else 80
    else:
        port = listener.port
    default_port = (scheme, port) in (("http", 80), ("https", 443))
    hostname = spec.hostname
    final_port: int | None = port
    if default_port:
        # "SHOULD NOT add the port" for http:80 / https:443. Envoy keeps the request's Host port
        # unless the host is rewritten, so we name the host: the filter's, or the virtual host's
        # exact domain (the request matched it). Under a wildcard domain the port stays explicit.
        if hostname is None and not domain.startswith("*"):
            hostname = domain
        if hostname is not None:
            final_port = None
    path = None
    if spec.path is not None:
        path = _path_rewrite(rule, spec.path.type, spec.path.value)
    redirect = Redirect(
        scheme=spec.scheme,
        hostname=hostname,
        port=final_port,
        path=path,
        status_code=spec.status_code,
    )
    return redirect, item


def _virtual_host_routes(
    domain: str,
    entries: Iterable[tuple[HTTPRoute, _RouteResult]],
    listener: Listener,
) -> tuple[Route, ...]:
    keyed: list[tuple[tuple[object, ...], Route]] = []
    host_part = domain.replace(".", "_")
    for route, result in entries:
        created = route.metadata.creation_timestamp
        base = f"httproute/{route.metadata.namespace}/{route.metadata.name}/rule/"
        for plan in result.plans:
            if plan.problem is not None:
                continue
            action: RouteAction
            if plan.action is None:
                action, _ = _redirect(plan.rule, listener, domain)
            else:
                action = plan.action
            for j, match in enumerate(plan.rule.matches):
                source = RouteSource(route.key, plan.index, j)
                match_ir = _match_ir(match)
                ir_route = Route(
                    name=f"{base}{plan.index}/match/{j}/{host_part}",
                    match=match_ir,
                    action=action,
                    source=source,
                    request_headers=plan.request_headers,
                    response_headers=plan.response_headers,
                )
                keyed.append((precedence_key(match_ir, created, source), ir_route))
    keyed.sort(key=lambda item: item[0])
    return tuple(route for _, route in keyed)


def _isolated(state: _ListenerState, hostname: str, port_group: Sequence[_ListenerState]) -> bool:
    """Listener Isolation: a more specific listener on this port owns `hostname`."""
    return any(
        other is not state
        and covers(other.spec.hostname, hostname)
        and more_specific(other.spec.hostname, state.spec.hostname)
        for other in port_group
    )


def _listener_virtual_hosts(
    state: _ListenerState,
    port_group: Sequence[_ListenerState],
    routes_on: dict[int, list[tuple[HTTPRoute, _RouteResult, tuple[str, ...]]]],
    placeholder: bool,
) -> list[VirtualHost]:
    by_domain: dict[str, list[tuple[HTTPRoute, _RouteResult]]] = {}
    for route, result, hostnames in routes_on.get(id(state), []):
        for hostname in hostnames:
            if not _isolated(state, hostname, port_group):
                by_domain.setdefault(hostname, []).append((route, result))
    if placeholder and state.spec.hostname is not None:
        by_domain.setdefault(state.spec.hostname, [])
    hosts = []
    for domain in sorted(by_domain):
        hosts.append(
            VirtualHost(
                name=f"{state.ir_name}/{domain.replace('.', '_')}",
                domain=domain,
                routes=_virtual_host_routes(domain, by_domain[domain], state.spec),
            )
        )
    return hosts


_MISDIRECTED_STATUS = 421


def _with_misdirected_hosts(
    state: _ListenerState, port_group: Sequence[_ListenerState], hosts: list[VirtualHost]
) -> tuple[VirtualHost, ...]:
    """HTTPS: a Host that another listener of the port serves answers 421 on this connection.

    Listener.Hostname: "If another Listener has an exact match or more specific wildcard entry,
    the Gateway SHOULD return a 421. If the current Listener (selected by SNI matching during
    ClientHello) does not match the Host: If another Listener does match the Host, the Gateway
    SHOULD return a 421. If no other Listener matches the Host, the Gateway MUST return a 404."
    Without this, a more specific listener's Host reaches this listener's wildcard routes over
    a connection whose SNI chose this listener. Each other listener's hostname becomes a virtual
    host answering 421; this listener's own hostname gets a route-less virtual host (404) so its
    hosts never fall into a broader 421 host. Envoy picks the most specific domain, which is
    exactly the listener precedence of the spec.
    """
    taken = {host.domain for host in hosts}
    result = list(hosts)

    def add(domain: str, routes: tuple[Route, ...]) -> None:
        if domain not in taken:
            taken.add(domain)
            name = f"{state.ir_name}/{domain.replace('.', '_')}"
            result.append(VirtualHost(name=name, domain=domain, routes=routes))

    others = [other for other in port_group if other is not state]
    if not others:
        return tuple(hosts)
    if state.spec.hostname is not None:
        add(state.spec.hostname, ())
    for other in others:
        domain = other.spec.hostname or "*"
        misdirected = Route(
            name=f"{state.ir_name}/misdirected/{domain.replace('.', '_')}",
            match=RouteMatchIR(path=StringMatch(kind="PathPrefix", value="/")),
            action=DirectResponse(_MISDIRECTED_STATUS),
            # Not from an HTTPRoute: the source names the Gateway, rule and match -1.
            source=RouteSource(other.gateway.key, -1, -1),
        )
        add(domain, (misdirected,))
    return tuple(sorted(result, key=lambda host: (host.domain, host.name)))


def build_ir(resources: Resources, options: TranslateOptions | None = None) -> tuple[IR, Statuses]:
    """Stage 1: decide what every served Gateway serves, and the status of every object."""
    options = options or TranslateOptions()
    served = sorted(
        (
            gateway
            for gateway in resources.gateways
            if options.gateway_class is None or gateway.gateway_class_name == options.gateway_class
        ),
        key=_gateway_order,
    )
    ports_taken: dict[int, ObjectKey] | None = None if options.bind_port_zero else {}
    listeners_by_gateway: dict[ObjectKey, list[_ListenerState]] = {}
    for gateway in served:
        states = _evaluate_listeners(gateway, resources, ports_taken)
        if gateway.addresses:  # UnsupportedAddress: the Gateway is not accepted at all
            for state in states:
                state.accepted = Condition.of(
                    Reason.ACCEPTED,
                    False,
                    Reason.UNSUPPORTED_VALUE,
                    "gateway not accepted",
                    gateway.metadata.generation,
                )
        listeners_by_gateway[gateway.key] = states

    results = [
        (route, _route_result(route, listeners_by_gateway, resources, options))
        for route in resources.http_routes
    ]

    routes_on: dict[int, list[tuple[HTTPRoute, _RouteResult, tuple[str, ...]]]] = {}
    seen: dict[tuple[int, ObjectKey], tuple[HTTPRoute, _RouteResult, tuple[str, ...]]] = {}
    gateways_of: dict[ObjectKey, set[ObjectKey]] = {}
    for route, result in results:
        for state, hostnames in result.attachments:
            state.attached.add(route.key)  # accepted on this listener: attachedRoutes
            gateways_of.setdefault(route.key, set()).add(state.gateway.key)
            key = (id(state), route.key)
            previous = seen.get(key)
            merged = tuple(sorted(set(hostnames) | set(previous[2] if previous else ())))
            seen[key] = (route, result, merged)
    for (state_id, _), entry in seen.items():
        routes_on.setdefault(state_id, []).append(entry)

    ir_listeners: list[IRListener] = []
    secrets: dict[str, TLSCertificate] = {}
    for gateway in served:
        states = [s for s in listeners_by_gateway[gateway.key] if s.is_programmed]
        ports: dict[int, list[_ListenerState]] = {}
        for state in states:
            ports.setdefault(state.spec.port, []).append(state)
        for port, group in ports.items():
            first = group[0]
            protocol = first.spec.protocol
            chains: list[FilterChain] = []
            if protocol == "HTTP":
                hosts: list[VirtualHost] = []
                for state in group:
                    hosts.extend(_listener_virtual_hosts(state, group, routes_on, len(group) > 1))
                hosts.sort(key=lambda host: (host.domain, host.name))
                chains.append(
                    FilterChain(
                        name=first.ir_name,
                        server_names=(),
                        certificates=(),
                        route_config=RouteConfig(first.ir_name, tuple(hosts)),
                    )
                )
            else:
                for state in group:
                    for certificate in state.certificates:
                        secrets[certificate.name] = certificate
                    chains.append(
                        FilterChain(
                            name=state.ir_name,
                            server_names=(state.spec.hostname,) if state.spec.hostname else (),
                            certificates=tuple(c.name for c in state.certificates),
                            route_config=RouteConfig(
                                state.ir_name,
                                _with_misdirected_hosts(
                                    state,
                                    group,
                                    _listener_virtual_hosts(state, group, routes_on, False),
                                ),
                            ),
                        )
                    )
            ir_listeners.append(
                IRListener(
                    name=first.ir_name,
                    gateway=gateway.key,
                    port=port,
                    protocol=protocol,
                    gateway_listeners=tuple(state.spec.name for state in group),
                    filter_chains=tuple(chains),
                )
            )

    used: set[str] = set()
    for listener in ir_listeners:
        for chain in listener.filter_chains:
            for host in chain.route_config.virtual_hosts:
                for ir_route in host.routes:
                    if isinstance(ir_route.action, Forward):
                        used.update(backend.cluster for backend in ir_route.action.backends)
    policies = resolve_backend_traffic_policies(resources, served, gateways_of)
    planned = {
        cluster.name: _with_policy(cluster, policies.settings.get(route.key))
        for route, result in results
        for plan in result.plans
        for cluster in plan.clusters
    }
    ir = IR(
        listeners=tuple(sorted(ir_listeners, key=lambda item: item.name)),
        clusters=tuple(planned[name] for name in sorted(used)),
        secrets=tuple(secrets[name] for name in sorted(secrets)),
    )
    statuses = Statuses(
        gateways=tuple(
            _gateway_status(gateway, listeners_by_gateway[gateway.key], True)
            for gateway in sorted(served, key=lambda g: g.key)
        ),
        http_routes=tuple(result.status for _, result in results),
        backend_traffic_policies=policies.statuses,
    )
    return ir, statuses


def _with_policy(cluster: Cluster, settings: ClusterSettings | None) -> Cluster:
    return cluster if settings is None else attrs.evolve(cluster, settings=settings)

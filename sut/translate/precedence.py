"""Stage 1, precedence: the order of the routes inside one virtual host, and of objects by age.

Rules of this module (HTTPRouteRule.Matches doc): Exact path, then RegularExpression (Envoy
Gateway's choice; the spec leaves it open), then PathPrefix; longer path values first
(PathPrefix "/" counts 0); a method match; more header matches; more query matches; then the
oldest route (creationTimestamp; routes without one come after), then "namespace/name"
alphabetically, then rule order, then match order. Envoy takes the first route that matches,
so this order is the whole of precedence.
"""

from __future__ import annotations

import datetime

from sut.gatewayapi import RouteMatch
from sut.translate.ir import RouteMatchIR, RouteSource, StringMatch

__all__ = ["creation_order", "match_ir", "precedence_key"]

_NEVER_CREATED = datetime.datetime.max.replace(tzinfo=datetime.UTC)
_PATH_RANK = {"Exact": 2, "RegularExpression": 1, "PathPrefix": 0}


def creation_order(created: datetime.datetime | None) -> datetime.datetime:
    """Oldest first; an object without a creationTimestamp comes after every one with one."""
    return created or _NEVER_CREATED


def match_ir(match: RouteMatch) -> RouteMatchIR:
    headers: dict[str, StringMatch] = {}
    for header in match.headers:  # "only the first entry with an equivalent name" counts
        headers.setdefault(header.name.lower(), StringMatch(kind=header.type, value=header.value))
    queries: dict[str, StringMatch] = {}
    for query in match.query_params:
        queries.setdefault(query.name, StringMatch(kind=query.type, value=query.value))
    return RouteMatchIR(
        path=StringMatch(kind=match.path.type, value=match.path.value),
        headers=tuple(headers.items()),
        query_params=tuple(queries.items()),
        method=match.method,
    )


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
        creation_order(created),
        str(source.route),
        source.rule,
        source.match,
    )

"""State-of-the-world ADS stream: what a `DiscoveryRequest` means, and full-set responses.

Rules (on top of those in `stream.py`):
- A request whose nonce is the one in flight is an ACK, or a NACK when it carries error_detail.
- A request with a stale nonce is neither; its resource names are still honoured.
- LDS and CDS are wildcard when the name list is empty; RDS and EDS with an empty list want nothing.
- The first request for a type on a stream is always answered with everything it asks for.
- A name newly added to `resource_names` is answered even if unchanged and sent before.
- LDS/CDS responses carry the full set (absence deletes); RDS/EDS responses carry the requested
  resources that changed or must be answered, and never delete. Requested names that do not
  exist yet are remembered and sent when they appear.
"""

from __future__ import annotations

import hashlib

from envoy.service.discovery.v3 import discovery_pb2

from sut.xds.resources import Resource
from sut.xds.stream import AdsStream, Outgoing, _TypeState

__all__ = ["SotwStream"]


class SotwStream(AdsStream):
    mode = "sotw"

    def receive(self, request: object) -> list[object]:
        assert isinstance(request, discovery_pb2.DiscoveryRequest)
        self._adopt_node(request.node.id)
        state = self._state(request.type_url)
        nonce = request.response_nonce
        error = request.error_detail.message if request.HasField("error_detail") else None
        names = set(request.resource_names)
        first = not state.opened

        outcome = self._classify(state, nonce, error)
        self.record(
            direction="request",
            type_short=state.type.short_name,
            nonce=nonce,
            version=request.version_info,
            names=tuple(sorted(names)),
            note=outcome,
            error_detail=error or "",
        )
        if outcome == "stale" and "stale-nonce-drops-subscription" in self.mutants:
            return []

        state.opened = True
        if state.type.is_wildcard_type and (not names or "*" in names):
            state.wildcard = True
        elif state.type.is_wildcard_type:
            state.wildcard = False
        names.discard("*")
        added = names - state.subscribed
        # The bug (mutant): the stream's bookkeeping ignores changes of resource names, so a
        # dropped name is still believed held and a re-added one is not answered.
        names_ignored = "sotw-new-names-ignored" in self.mutants
        if not names_ignored:
            self._forget(state, state.subscribed - names)
        state.subscribed = names
        if first and request.version_info and self.served is not None:
            # A reconnecting client holds what that version carried; it is answered anyway,
            # but what it holds decides what may be removed when (rule 5).
            held = self.served.lookup(self.node_id, state.type, request.version_info)
            state.known = {name: held[name] for name in held if state.wildcard or name in names}
        if first or not nonce:
            # A (re)opened subscription gets an answer, whatever the server thinks it holds.
            state.resend.update(self._desired_names(state) if self.snapshot else names)
            state.must_answer = state.wildcard
        elif not names_ignored:
            state.resend.update(added)
        if "request-version-trusted" in self.mutants and self._is_current(state, request):
            self._trust_request_version(state)
        return self._flush()

    def _is_current(self, state: _TypeState, request: discovery_pb2.DiscoveryRequest) -> bool:
        """The request's version_info is the type version the stream would send now."""
        return (
            self.snapshot is not None
            and bool(request.version_info)
            and request.version_info == self.snapshot.type_version(state.type)
        )

    def _trust_request_version(self, state: _TypeState) -> None:
        """The bug (mutant `request-version-trusted`): a request at the current version is
        taken to mean the client holds every name it asks for, at the current content, so
        nothing is (re)sent for it, not even names it newly asks for."""
        existing = self._existing(state.type)
        held = {name: existing[name] for name in self._desired_names(state)}
        if state.type.is_wildcard_type:
            state.known = held
        else:
            state.known.update(held)
        state.resend -= set(held)
        state.must_answer = False

    def _updates(self, state: _TypeState) -> list[Resource]:
        updates = super()._updates(state)
        # The bug: decide by the type version alone, so a request that only adds a name at the
        # version last sent is never answered.
        if (
            "sotw-new-names-ignored" in self.mutants
            and updates
            and self.snapshot is not None
            and state.last_sent_nonce
            and not state.resend
            and self._version_sent(state) == self.snapshot.type_version(state.type)
        ):
            return []
        return updates

    def _commit(self, state: _TypeState, outgoing: Outgoing) -> object:
        response = super()._commit(state, outgoing)
        if self.served is not None:
            self.served.record(self.node_id, state.type, outgoing.version, outgoing.resources)
        return response

    def _version_sent(self, state: _TypeState) -> str:
        return state.in_flight.version if state.in_flight else state.last_sent_version

    def _removals(self, state: _TypeState) -> list[str]:
        if self.snapshot is None or not state.opened or not state.type.is_wildcard_type:
            return []
        existing = self.snapshot.of_type(state.type)
        return sorted(name for name in state.known if name not in existing)

    def _compose(self, state: _TypeState, updates: list[Resource], removals: list[str]) -> Outgoing:
        assert self.snapshot is not None
        version = self.snapshot.type_version(state.type)
        if not state.type.is_wildcard_type:
            # RDS/EDS: only what changed or must be answered; absence deletes nothing.
            carried = tuple(self._carried(state, updates))
            return Outgoing(state.type, self._response_nonce(version), version, carried, ())
        existing = self.snapshot.of_type(state.type)
        # Deferred removals stay in the full set until make-before-break allows dropping them.
        kept = [
            resource
            for name, resource in sorted(state.known.items())
            if name not in existing and name not in removals
        ]
        resources = (*existing.values(), *kept)
        if kept:
            digest = hashlib.sha256("".join(f"{r.name}\0{r.version}\n" for r in resources).encode())
            version = digest.hexdigest()[:16]
        nonce = self._response_nonce(version)
        return Outgoing(state.type, nonce, version, resources, tuple(removals))

    def _to_proto(self, outgoing: Outgoing) -> discovery_pb2.DiscoveryResponse:
        return discovery_pb2.DiscoveryResponse(
            version_info=outgoing.version,
            type_url=outgoing.type.type_url,
            nonce=outgoing.nonce,
            resources=[resource.to_any() for resource in outgoing.resources],
        )

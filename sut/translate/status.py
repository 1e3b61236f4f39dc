"""Stage 1, Gateway status: the conditions of a Gateway and of each of its listeners.

Rules of this module: a listener is Programmed when it is accepted and, for HTTPS, has a valid
certificate. The Gateway is Accepted unless it has spec.addresses (UnsupportedAddress) or no
valid listener (ListenersNotValid); with some invalid listeners it stays Accepted with reason
ListenersNotValid. It is Programmed when any listener is. `attachedRoutes` counts the routes
Accepted on the listener (ListenerStatus.AttachedRoutes); the listener's own Accepted condition
does not matter ("MUST be set for Listeners, even if the Accepted condition of an individual
Listener is set to "False"").
"""

from __future__ import annotations

from collections.abc import Sequence

from sut.gatewayapi import Condition, Gateway, GatewayStatus, ListenerStatus, Reason
from sut.translate.listeners import ListenerState

__all__ = ["gateway_status"]


def gateway_status(
    gateway: Gateway, states: Sequence[ListenerState], served: bool
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

"""The key a configuration's examples are saved under in Hypothesis's database.

Hypothesis keys a state machine's examples by its class name, so each configuration (mode,
mutants, every other setting) gets a name of its own: failures saved for one are neither replayed
nor deleted by another's runs.
"""

from __future__ import annotations

import enum
import hashlib
import json

import attrs

from harness.lockstep.stack import StackSettings

__all__ = ["configuration_key"]


def configuration_key(settings: StackSettings) -> str:
    """The mode, the mutants and a digest of every other setting, stable across processes (a
    frozenset's order is not: string hashes are salted per process)."""
    mutants = "+".join(sorted(settings.mutants.names)) or "no mutant"
    fields = _canonical(settings)
    assert isinstance(fields, dict)
    if settings.proxies == 1:
        del fields["proxies"]  # a fleet of one keys its examples as before fleets existed
    if settings.gateways == 1:
        del fields["gateways"]  # so does a stack of one Gateway
    for optional in ("external", "extensions"):
        if fields.get(optional) is None:
            fields.pop(optional, None)  # and routeproof's own server, with no user extensions
    canonical = json.dumps(fields, sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return f"{settings.mode}, {mutants}, {digest}"


def _canonical(value: object) -> object:
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))  # type: ignore[arg-type]
        return {field.name: _canonical(getattr(value, field.name)) for field in fields}
    if isinstance(value, set | frozenset):
        return sorted((_canonical(item) for item in value), key=repr)
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value

"""An extension for the tests of inconclusive examples: a resync during which the healthy
extension server stalls, unknown to the model (as a starved machine stalls it)."""

from __future__ import annotations

import attrs

from harness.lockstep.extensions import Extensions, Letter, Operation
from sut.extension import Fault


@attrs.frozen
class StalledResync(Operation):
    kind = "stalled-resync"

    def describe(self) -> str:
        return "resync while the extension server stalls (the model does not know)"

    def on_model(self, model):
        return model.reconcile()

    def on_stack(self, stack, before, after):
        stack.extension_server.set_fault(Fault.HANG)
        try:
            stack.reconcile()
        finally:
            stack.extension_server.set_fault(Fault.HEALTHY)


def _when_healthy(model):
    healthy = model.extension is not None and model.extension.failing is None
    return StalledResync() if healthy else None


EXTENSIONS = Extensions(
    operations=[StalledResync],
    letters=[Letter("stalled resync", "stalled-resync", _when_healthy)],
)

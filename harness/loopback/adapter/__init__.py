"""The adapter protocol: how the harness drives an xDS server it did not build.

An adapter serves four calls (`proto/routeproof/adapter/v1/adapter.proto`): Capabilities,
Push (a node's complete snapshot), Restart and Ready. `AdapterClient` is the harness's side,
`AdapterCache` lets the control-plane runner publish through it as into a `SnapshotCache`, and
`reference` serves routeproof's own cache and xDS server behind the protocol.
"""

from harness.loopback.adapter.client import AdapterCache, AdapterClient, AdapterError, Capabilities
from harness.loopback.adapter.process import AdapterProcess, reference_command

__all__ = [
    "AdapterCache",
    "AdapterClient",
    "AdapterError",
    "AdapterProcess",
    "Capabilities",
    "reference_command",
]

"""A spec-compliant xDS control plane core: snapshots, a cache, SotW and Delta ADS streams.

The per-stream bookkeeping of what each client holds (`known`, subscriptions, resend marks) lives
in the sans-IO stream state machines; `server.XdsServer` is the thin gRPC adapter around them.
"""

from sut.xds.cache import SnapshotCache, SnapshotWatcher
from sut.xds.delta import DeltaStream
from sut.xds.resources import ADS_ORDER, References, Resource, ResourceType
from sut.xds.served import ServedSets
from sut.xds.server import XdsServer
from sut.xds.snapshot import Snapshot, consistency_errors
from sut.xds.sotw import SotwStream
from sut.xds.stream import AdsStream, Exchange, NackRecord, StreamStatus, TypeStatus

__all__ = [
    "ADS_ORDER",
    "AdsStream",
    "DeltaStream",
    "Exchange",
    "NackRecord",
    "References",
    "Resource",
    "ResourceType",
    "ServedSets",
    "Snapshot",
    "SnapshotCache",
    "SnapshotWatcher",
    "SotwStream",
    "StreamStatus",
    "TypeStatus",
    "XdsServer",
    "consistency_errors",
]

"""A spec-compliant xDS control plane core: snapshots, a cache, SotW and Delta ADS streams.

The per-stream bookkeeping of what each client holds lives in the sans-IO stream core
(`stream.AdsStream`: one frozen `Subscription` per type, make-before-break as the rows of
`ordering`), with SotW and Delta as two policies over it; a core serves every type (ADS) or
the types it is built with (a per-type stream, ordered within itself only). `server.XdsServer`
is the thin gRPC adapter that carries out the core's effects, for ADS and the five per-type
discovery services. The cache only stores snapshots and notifies; it
meets the streams at `SnapshotSource`.
"""

from sut.xds.cache import SnapshotCache, SnapshotWatcher
from sut.xds.delta import DeltaPolicy, DeltaStream
from sut.xds.effects import Effect, Send, Unwatch, Watch
from sut.xds.resources import ADS_ORDER, References, Resource, ResourceType
from sut.xds.served import ServedSets
from sut.xds.server import XdsServer
from sut.xds.snapshot import Snapshot, consistency_errors
from sut.xds.sotw import SotwPolicy, SotwStream
from sut.xds.source import SnapshotSource
from sut.xds.status import Exchange, StreamStatus, TypeStatus
from sut.xds.stream import AdsStream, StreamPolicy
from sut.xds.subscription import NackRecord, Phase, Subscription

__all__ = [
    "ADS_ORDER",
    "AdsStream",
    "DeltaPolicy",
    "DeltaStream",
    "Effect",
    "Exchange",
    "NackRecord",
    "Phase",
    "References",
    "Resource",
    "ResourceType",
    "Send",
    "ServedSets",
    "Snapshot",
    "SnapshotCache",
    "SnapshotSource",
    "SnapshotWatcher",
    "SotwPolicy",
    "SotwStream",
    "StreamPolicy",
    "StreamStatus",
    "Subscription",
    "TypeStatus",
    "Unwatch",
    "Watch",
    "XdsServer",
    "consistency_errors",
]

"""The fault catalogue. Each fault has a kind, a target, ``plan`` (what its undo will need, journaled
*before* it takes effect), ``apply`` and a class-level ``undo`` that works from the journal record
alone — so ``drill chaos heal`` can undo a fault whose runner died.
"""

from chaos.faults.base import (
    FAULTS,
    LOCAL_ONLY,
    PROVIDERS,
    Fault,
    FaultError,
    UnsupportedFault,
    require_supported,
    unsupported,
)
from chaos.faults.broker import (
    CloseConnections,
    DiskAlarm,
    FullOutage,
    KillNode,
    MemoryAlarm,
    MoveLeader,
    PauseNode,
    RestartNode,
    RollingRestart,
    StopNode,
)
from chaos.faults.link import (
    LinkBandwidth,
    LinkDown,
    LinkLatency,
    LinkLimitData,
    LinkResetPeer,
    LinkSlicer,
    LinkSlowClose,
    LinkTimeout,
)
from chaos.faults.partition import Partition
from chaos.faults.service import CrashLoop, KillReplica, PauseReplica, RestartReplica, StopService

__all__ = [
    "FAULTS",
    "LOCAL_ONLY",
    "PROVIDERS",
    "CloseConnections",
    "CrashLoop",
    "DiskAlarm",
    "Fault",
    "FaultError",
    "FullOutage",
    "KillNode",
    "KillReplica",
    "LinkBandwidth",
    "LinkDown",
    "LinkLatency",
    "LinkLimitData",
    "LinkResetPeer",
    "LinkSlicer",
    "LinkSlowClose",
    "LinkTimeout",
    "MemoryAlarm",
    "MoveLeader",
    "Partition",
    "PauseNode",
    "PauseReplica",
    "RestartNode",
    "RestartReplica",
    "RollingRestart",
    "StopNode",
    "StopService",
    "UnsupportedFault",
    "require_supported",
    "unsupported",
]

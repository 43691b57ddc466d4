"""The gRPC service: thin servicers, proto <-> domain conversion (``convert``), validation and
the server factory ``create_server``."""

from __future__ import annotations

from scheduler.service.server import (
    SERVICE_NAMES,
    ServerConfig,
    ServerLimits,
    ValleyServer,
    create_server,
)

__all__ = ["SERVICE_NAMES", "ServerConfig", "ServerLimits", "ValleyServer", "create_server"]

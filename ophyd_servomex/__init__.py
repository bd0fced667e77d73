"""ophyd_servomex: Servomex SERVOPRO 4000-series gas analysers for Bluesky and ophyd-async.

The driver's public API (the reference driver's page: ``open_device``, ``Analyzer``,
``Frame``, ``Sample``, ``record``, ``ServomexManager``, the error hierarchy …) is
importable from here, so ``import ophyd_servomex as servomexlib`` runs code written for it.
Heavy layers (the driver, ophyd-async devices, the catalog) are imported on first use, so
``import ophyd_servomex`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .codec import *  # noqa: F403
from .codec import __all__ as _codec_all

__version__ = "0.1.0"

# name -> module that defines it, imported lazily on first attribute access
_LAZY: dict[str, str] = {
    "Analyzer": ".driver",
    "open_device": ".driver",
    "open_continuous": ".driver",
    "StreamingSession": ".driver",
    "ContinuousClient": ".driver",
    "ModbusClient": ".driver",
    "detect_protocol": ".driver",
    "PortOwner": ".driver",
    "ModbusLine": ".driver",
    "Subscription": ".driver",
    "ProtocolDetectionError": ".driver",
    "ServomexManager": ".driver",
    "FakeTransport": ".transport",
    "Transport": ".transport",
    "ByteStreamTransport": ".transport",
    "ErrorPolicy": ".driver",
    "DeviceResult": ".driver",
    "record": ".driver",
    "Recording": ".driver",
    "OverflowPolicy": ".driver",
    "AcquisitionSummary": ".driver",
    "PollSource": ".driver",
    "ServomexAnalyser": ".devices",
    "ServomexChannel": ".devices",
    "ServomexBus": ".devices",
    "Servomex": ".sync",
    "SyncAnalyzer": ".sync",
    "SyncManager": ".sync",
    "DeviceErrors": ".driver",
    "open_catalog": ".catalog",
    "subscribe_writer": ".catalog",
}

__all__ = [*_codec_all, *_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ophyd_servomex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

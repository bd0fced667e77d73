"""Forgetting ophyd-async's cached connect when a device lets go of its port.

ophyd-async (0.21.3) caches a successful real ``connect()``: ``Device.connect`` keeps the
task in the private ``Device._connect_task`` and, while that task finished without error,
returns at once instead of calling ``connect_real`` again (only ``force_reconnect=True``
goes past it). It has no public way to drop the cache and ``Device`` has no
``disconnect``. The analyser and the bus close their port in their own ``disconnect()``,
so each must drop it, or the next plain ``connect()`` would return without opening
anything. :func:`forget_connect` is the one place that touches the attribute (check it
when ophyd-async is upgraded; ``tests/devices/test_device_bus.py`` does).
"""

from __future__ import annotations

from ophyd_async.core import Device

__all__ = ["forget_connect"]


def forget_connect(device: Device) -> None:
    """Make the next ``device.connect()`` run ``connect_real`` again (see the module doc)."""
    device._connect_task = None

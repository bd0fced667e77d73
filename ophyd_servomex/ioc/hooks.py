"""Alarm severity, timestamps and the requesting client on FastCS attributes (PVA and CA).

FastCS 0.14 derives a PV's alarm only from numeric alarm limits and stamps every update with
the time of posting. An analyser knows better: a channel in fault is MAJOR, one with an
alarm flag MINOR, a value that is not a measurement (no frame yet, link down) INVALID, and
each frame has its own timestamp. :class:`AlarmedAttrR` carries that state, and
:func:`install` teaches the PVA and CA transports to publish it:

- PVA: the NTScalar FastCS builds for an update gets ``alarm`` and ``timeStamp`` replaced;
- CA: the input record FastCS builds is wrapped so ``set`` passes severity, status and
  timestamp to pythonSoftIOC.

A third hook records who asked for a PVA put (:func:`requester`: the client's host and
account, which PVA tells), so calibration requests are logged with their origin (Channel
Access does not tell the server who writes), and answers a put that fails validation with
its reason instead of leaving the client to time out.

The hooks touch only attributes of this class; every other attribute behaves as in
FastCS. The hooks wrap FastCS functions by name (``fastcs==0.14.4`` is pinned), and
:func:`install` checks those names exist so a FastCS change fails loudly at start-up.
"""

from __future__ import annotations

import contextvars
import math
import time
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from fastcs.attributes import AttrR
from fastcs.datatypes import DataType

__all__ = [
    "NO_ALARM",
    "Alarm",
    "AlarmKind",
    "AlarmedAttrR",
    "Severity",
    "install",
    "install_ca",
    "install_pva",
    "requester",
]

_REQUESTER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ophyd_servomex_ioc_requester", default=None
)


def requester() -> str:
    """Who made the put being handled: ``host (account)`` over PVA, else a note saying so."""
    return _REQUESTER.get() or "unknown client (Channel Access does not tell the server)"


class Severity(IntEnum):
    """EPICS alarm severity (the same numbers in CA and PVA)."""

    NO_ALARM = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3


class AlarmKind(StrEnum):
    """Why a value is in alarm; mapped to a CA alarm status and a PVA alarm status."""

    NONE = "none"
    STATE = "state"
    """The analyser reports it: a channel fault or alarm flag."""
    COMM = "comm"
    """The link to the analyser is down or a poll failed."""
    UDF = "udf"
    """No frame has arrived yet."""


# CA: softioc.alarm codes; PVA: the alarm_t status enum (0 none, 1 device, 2 driver, 6 undefined)
_CA_STATUS = {AlarmKind.NONE: 0, AlarmKind.STATE: 7, AlarmKind.COMM: 9, AlarmKind.UDF: 17}
_PVA_STATUS = {AlarmKind.NONE: 0, AlarmKind.STATE: 1, AlarmKind.COMM: 2, AlarmKind.UDF: 6}


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm state: severity, kind and a short message (PVA shows it; CA cannot)."""

    severity: Severity = Severity.NO_ALARM
    kind: AlarmKind = AlarmKind.NONE
    message: str = ""


NO_ALARM = Alarm()
NO_FRAME = Alarm(Severity.INVALID, AlarmKind.UDF, "no frame from the analyser yet")


class _Unequal:
    """Compares unequal to everything, so FastCS posts an update whose value did not change."""

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


_UNEQUAL: Any = _Unequal()


class AlarmedAttrR[T: (int, float, bool, str)](AttrR[T, Any]):  # type: ignore[misc]
    """A read-only FastCS attribute with an alarm state and a source timestamp.

    Starts INVALID (no frame yet). :meth:`publish` sets value, alarm and timestamp in one
    update; a change of alarm alone still reaches the clients. With ``every_update`` each
    update is posted even when nothing changed (a channel's value: one post per frame,
    stamped with the frame's time).
    """

    def __init__(
        self,
        datatype: DataType[T],
        *,
        initial_value: T | None = None,
        description: str | None = None,
        alarm: Alarm = NO_FRAME,
        every_update: bool = False,
    ) -> None:
        super().__init__(datatype, initial_value=initial_value, description=description)
        self.alarm: Alarm = alarm
        self.timestamp: float = time.time()
        self.every_update = every_update
        self._posted: Alarm | None = None

    async def publish(
        self, value: T, alarm: Alarm = NO_ALARM, timestamp: float | None = None
    ) -> None:
        """Update the value with its alarm state and timestamp (default: now)."""
        self.alarm = alarm
        self.timestamp = time.time() if timestamp is None else timestamp
        await self.update(value)

    async def update(self, value: Any) -> None:
        """FastCS's update; forces the clients' update when only the alarm changed."""
        if self.every_update or self._posted != self.alarm:
            self._value = _UNEQUAL
        self._posted = self.alarm
        await super().update(value)


def _epics_seconds(timestamp: float) -> tuple[int, int]:
    seconds = math.floor(timestamp)
    return seconds, min(int((timestamp - seconds) * 1e9), 999_999_999)


_installed: set[str] = set()


def install() -> None:
    """Hook the alarm state of :class:`AlarmedAttrR` into FastCS's PVA and CA transports.

    Call before the transports build their PVs; calling again does nothing.
    """
    install_pva()
    install_ca()


def _check(module: Any, name: str) -> None:
    if not callable(getattr(module, name, None)):  # pragma: no cover - a FastCS change
        raise RuntimeError(
            f"FastCS changed: {module!r}.{name} is missing; ophyd_servomex.ioc needs fastcs 0.14.4"
        )


def install_pva() -> None:
    """The PVA half of :func:`install` (alarm, timestamp and the requester of a put)."""
    if "pva" in _installed:
        return
    from fastcs.transports.epics.pva import _pv_handlers as pva_handlers

    _check(pva_handlers, "cast_to_p4p_value")
    _check(pva_handlers.WritePvHandler, "put")
    cast_to_p4p_value = pva_handlers.cast_to_p4p_value

    def cast_with_alarm(attribute: Any, value: Any) -> object:
        result = cast_to_p4p_value(attribute, value)
        if isinstance(attribute, AlarmedAttrR):
            alarm: Alarm = attribute.alarm
            seconds, nanoseconds = _epics_seconds(attribute.timestamp)
            result["alarm.severity"] = int(alarm.severity)
            result["alarm.status"] = _PVA_STATUS[alarm.kind]
            result["alarm.message"] = alarm.message
            result["timeStamp.secondsPastEpoch"] = seconds
            result["timeStamp.nanoseconds"] = nanoseconds
        return result

    write_put = pva_handlers.WritePvHandler.put

    async def put_with_requester(handler: Any, pv: Any, op: Any) -> None:
        try:
            who = f"{op.peer()} ({op.account() or 'no account'})"
        except Exception:  # pragma: no cover - p4p without peer information
            who = None
        token = _REQUESTER.set(who)
        try:
            await write_put(handler, pv, op)
        except Exception as exc:
            # FastCS validates before its own error handling: without this the client of
            # an out-of-range put waits for its timeout instead of getting the reason
            op.done(error=f"{type(exc).__name__}: {exc}")
        finally:
            _REQUESTER.reset(token)

    pva_handlers.cast_to_p4p_value = cast_with_alarm
    pva_handlers.WritePvHandler.put = put_with_requester
    _installed.add("pva")


def install_ca() -> None:
    """The CA half of :func:`install` (imports pythonSoftIOC: call it where CA is served)."""
    if "ca" in _installed:
        return
    from fastcs.transports.epics.ca import ioc as ca_ioc

    _check(ca_ioc, "_make_in_record")
    make_in_record = ca_ioc._make_in_record

    def in_record_with_alarm(pv: str, attribute: Any) -> Any:
        record = make_in_record(pv, attribute)
        if isinstance(attribute, AlarmedAttrR):
            return _AlarmedRecord(record, attribute)
        return record

    ca_ioc._make_in_record = in_record_with_alarm
    _installed.add("ca")


class _AlarmedRecord:
    """A pythonSoftIOC input record whose ``set`` carries its attribute's alarm and time."""

    def __init__(self, record: Any, attribute: AlarmedAttrR[Any]) -> None:
        self._record = record
        self._attribute = attribute
        self._apply(record.get())

    def _apply(self, value: Any) -> None:
        alarm = self._attribute.alarm
        self._record.set(
            value,
            severity=int(alarm.severity),
            alarm=_CA_STATUS[alarm.kind],
            timestamp=self._attribute.timestamp,
        )

    def set(self, value: Any, *args: Any, **kwargs: Any) -> None:
        """Set the value with the attribute's alarm state and timestamp."""
        self._apply(value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._record, name)

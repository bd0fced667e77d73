"""Which serial ports this machine has (for ``discover``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PortInfo", "list_ports"]


@dataclass(frozen=True, slots=True)
class PortInfo:
    """One serial port found on this machine."""

    device: str  #: the path to open, e.g. ``/dev/ttyUSB0`` or ``COM3``
    description: str = ""  #: a human description, e.g. ``USB-RS485 Cable``
    hwid: str = ""  #: the hardware id, e.g. ``USB VID:PID=0403:6001 SER=FT1234``
    vid: int | None = None  #: USB vendor id, when the port is a USB adapter
    pid: int | None = None  #: USB product id
    serial_number: str | None = None  #: the adapter's serial number
    manufacturer: str | None = None  #: the adapter's manufacturer


def list_ports() -> list[PortInfo]:
    """The serial ports pyserial finds, sorted by device path. Blocking but quick."""
    from serial.tools import list_ports as pyserial_list_ports  # lazily

    found = [
        PortInfo(
            device=str(info.device),
            description=_text(info.description),
            hwid=_text(info.hwid),
            vid=info.vid,
            pid=info.pid,
            serial_number=info.serial_number,
            manufacturer=info.manufacturer,
        )
        for info in pyserial_list_ports.comports()
    ]
    return sorted(found, key=lambda port: port.device)


def _text(value: object) -> str:
    """pyserial says ``"n/a"`` where it knows nothing; say nothing instead."""
    text = "" if value is None else str(value)
    return "" if text == "n/a" else text

"""How to reach one analyser, as one frozen object: :class:`ConnectionOptions`.

It carries what the public signatures spell out (``open_device``, ``Analyzer``,
``ServomexManager.add``, ``Servomex.open``, ``ServomexAnalyser``): the port, protocol,
Modbus address, serial settings, timeout, inter-frame idle, retries, whether to identify on
opening, and the continuous frame period. Its ``__post_init__`` runs the codec's checks
(:func:`parse_protocol` here, the numeric ones in :mod:`ophyd_servomex.codec.checks`), so an
options object that exists is valid, and ``dataclasses.replace`` checks again. Layers that
take one of these arguments alone call the same checks, so a bad argument raises the same
:class:`~ophyd_servomex.codec.errors.ServomexValidationError` wherever it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from .checks import check_address, check_count, check_non_negative, check_positive
from .errors import ErrorContext, ServomexValidationError
from .models import ProtocolKind, SerialSettings

__all__ = [
    "DEFAULT_EXPECTED_PERIOD",
    "DEFAULT_INTER_FRAME_IDLE",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "ConnectionOptions",
    "parse_protocol",
]


DEFAULT_TIMEOUT = 1.0
"""Seconds per Modbus attempt, and for the first continuous frame beyond its period."""
DEFAULT_EXPECTED_PERIOD = 2.0
"""Seconds between two continuous-mode broadcasts (the bench unit's front-panel setting)."""
DEFAULT_INTER_FRAME_IDLE = 0.05
"""Line silence before every request: the bench 4100D drops requests that come sooner."""
DEFAULT_RETRIES = 2
"""Extra attempts for a read after a timeout or a damaged reply (never for a write)."""


def parse_protocol(value: object, *, context: ErrorContext | None = None) -> ProtocolKind:
    """``value`` as a :class:`ProtocolKind`: a member, its value or a short name.

    ``"rtu"``, ``"ascii"``, ``"continuous"``, ``"auto"`` (any case, ``_`` or ``-``), the
    long values and the member names (see :meth:`ProtocolKind.parse`).

    Raises:
        ServomexValidationError: ``unknown protocol 'x'; expected one of auto, continuous,
            rtu (modbus-rtu), ascii (modbus-ascii)``.
    """
    if isinstance(value, ProtocolKind):
        return value
    try:
        return ProtocolKind.parse(cast("str", value))  # a value not a str is refused too
    except ServomexValidationError as exc:
        raise ServomexValidationError(exc.message, context=context) from None


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """How to reach one analyser: every connection argument, checked once, in one object.

    ::

        options = ConnectionOptions("/dev/ttyUSB0", protocol=ProtocolKind.MODBUS_RTU, address=30)
        analyzer = Analyzer.from_options(options)
        slower = dataclasses.replace(options, timeout=3.0)   # checked again

    ``port`` is the port string (``""`` when an open transport is used instead); ``protocol``
    may be given as a short name (``"rtu"``) and is stored as a :class:`ProtocolKind`;
    ``serial_settings`` overrides the default ``SerialSettings(port)`` (19200 8-N-1).
    ``timeout`` is per Modbus attempt (and for the first continuous frame beyond
    ``expected_period``), ``inter_frame_idle`` the line silence before each request,
    ``retries`` the extra attempts of a read, ``identify`` whether the channels' names and
    units are read on opening.

    Raises:
        ServomexValidationError: a bad field (the message names it; the context carries
            the port).
    """

    port: str
    protocol: ProtocolKind = ProtocolKind.AUTO
    address: int = 1
    serial_settings: SerialSettings | None = None
    timeout: float = DEFAULT_TIMEOUT
    inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE
    retries: int = DEFAULT_RETRIES
    identify: bool = True
    expected_period: float = DEFAULT_EXPECTED_PERIOD

    def __post_init__(self) -> None:
        if not isinstance(self.port, str):
            raise ServomexValidationError(f"port must be a port string, not {self.port!r}")
        context = ErrorContext(port=self.port or None)
        put = object.__setattr__
        put(self, "protocol", parse_protocol(self.protocol, context=context))
        context = context.merged(protocol=self.protocol.value)
        put(self, "address", check_address(self.address, context=context))
        if self.serial_settings is not None and not isinstance(
            self.serial_settings, SerialSettings
        ):
            raise ServomexValidationError(
                f"serial_settings must be a SerialSettings or None, not {self.serial_settings!r}",
                context=context,
            )
        put(self, "timeout", check_positive("timeout", self.timeout, context=context))
        put(
            self,
            "inter_frame_idle",
            check_non_negative("inter_frame_idle", self.inter_frame_idle, context=context),
        )
        put(self, "retries", check_count("retries", self.retries, context=context))
        if not isinstance(self.identify, bool):
            raise ServomexValidationError(
                f"identify must be True or False, not {self.identify!r}", context=context
            )
        put(
            self,
            "expected_period",
            check_positive("expected_period", self.expected_period, context=context),
        )

    @property
    def context(self) -> ErrorContext:
        """The port, protocol and address, for errors about this connection."""
        return ErrorContext(
            port=self.port or None, protocol=self.protocol.value, address=self.address
        )

"""What an IOC serves: one analyser per EPICS prefix, each on a port or a place on a bus.

``ophyd-servomex ioc --prefix SMX1: PORT`` makes one :class:`AnalyserConfig`;
``--config FILE`` reads several from one TOML or YAML file::

    [[analyser]]
    prefix = "SMX1:"
    port = "/dev/ttyUSB0"
    protocol = "modbus-rtu"
    address = 30

    [[analyser]]                     # same port, another address: one shared RS485 bus
    prefix = "SMX2:"
    port = "/dev/ttyUSB0"
    protocol = "modbus-rtu"
    address = 31
    channels = ["I1", "E1"]

(YAML: a mapping with an ``analysers`` list of the same keys.) Keys per analyser:
``prefix``, ``port`` (required); ``protocol`` (default auto), ``address`` (1), ``baud``
(19200), ``channels`` (default: found at start), ``poll_period`` (1 s), ``timeout`` (1 s),
``expected_period`` (2 s), ``inter_frame_idle`` (0.05 s), ``discover_timeout`` (5 s).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..codec.checks import check_address, check_positive
from ..codec.errors import ServomexConfigurationError, ServomexValidationError
from ..codec.models import ChannelId, ProtocolKind, SerialSettings

__all__ = [
    "DEFAULT_POLL_PERIOD",
    "AnalyserConfig",
    "IocConfig",
    "load_config",
]

DEFAULT_POLL_PERIOD = 1.0
"""Seconds between Modbus sweeps unless configured (settable at run time through a PV)."""

MIN_POLL_PERIOD = 0.05
MAX_POLL_PERIOD = 3600.0

_PREFIX = re.compile(r"[A-Za-z0-9_\-:]{1,40}")
_KEYS = {
    "prefix",
    "port",
    "protocol",
    "address",
    "baud",
    "channels",
    "poll_period",
    "timeout",
    "expected_period",
    "inter_frame_idle",
    "discover_timeout",
}


def _positive(name: str, value: object) -> float:
    """The codec's positive-number check, as a configuration error."""
    try:
        return check_positive(name, value)
    except ServomexValidationError as exc:
        raise ServomexConfigurationError(exc.message) from None


@dataclass(frozen=True, slots=True)
class AnalyserConfig:
    """One analyser served under one EPICS prefix."""

    prefix: str
    port: str
    protocol: ProtocolKind = ProtocolKind.AUTO
    address: int = 1
    baud: int = 19200
    channels: tuple[ChannelId, ...] | None = None
    poll_period: float = DEFAULT_POLL_PERIOD
    timeout: float = 1.0
    expected_period: float = 2.0
    inter_frame_idle: float = 0.05
    discover_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix) or not self.prefix.endswith(":"):
            raise ServomexConfigurationError(
                f"prefix must be letters, digits, '_', '-' or ':' ending in ':' "
                f"(such as 'SMX1:'), not {self.prefix!r}"
            )
        if not self.prefix.rstrip(":"):
            raise ServomexConfigurationError(f"prefix {self.prefix!r} has no name")
        if not self.port:
            raise ServomexConfigurationError(f"{self.prefix}: a port is required")
        try:
            check_address(self.address)
        except ServomexValidationError as exc:
            raise ServomexConfigurationError(f"{self.prefix}: {exc.message}") from None
        try:
            SerialSettings(port=self.port, baudrate=self.baud)
        except ServomexValidationError as exc:
            raise ServomexConfigurationError(f"{self.prefix}: {exc.message}") from None
        for name in ("poll_period", "timeout", "expected_period", "discover_timeout"):
            _positive(f"{self.prefix} {name}", getattr(self, name))
        if not MIN_POLL_PERIOD <= self.poll_period <= MAX_POLL_PERIOD:
            raise ServomexConfigurationError(
                f"{self.prefix}: poll_period must be {MIN_POLL_PERIOD}–{MAX_POLL_PERIOD} s, "
                f"not {self.poll_period!r}"
            )
        if self.inter_frame_idle < 0:
            raise ServomexConfigurationError(f"{self.prefix}: inter_frame_idle must be ≥ 0")
        if self.channels is not None and (
            not self.channels or len(set(self.channels)) != len(self.channels)
        ):
            raise ServomexConfigurationError(
                f"{self.prefix}: channels must be distinct and not empty"
            )

    @property
    def controller_id(self) -> str:
        """The FastCS controller id: the prefix without its trailing colon(s)."""
        return self.prefix.rstrip(":")

    @property
    def serial_settings(self) -> SerialSettings:
        """8-N-1 at :attr:`baud`."""
        return SerialSettings(port=self.port, baudrate=self.baud)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "") -> AnalyserConfig:
        """Build from one TOML/YAML table; unknown keys and bad values raise."""
        unknown = set(data) - _KEYS
        if unknown:
            raise ServomexConfigurationError(
                f"{where}unknown key(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(_KEYS))}"
            )
        if "prefix" not in data or "port" not in data:
            raise ServomexConfigurationError(f"{where}'prefix' and 'port' are required")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k != "channels"}
        for key in ("prefix", "port", "protocol"):
            if key in kwargs and not isinstance(kwargs[key], str):
                raise ServomexConfigurationError(f"{where}{key} must be a string")
        if "protocol" in kwargs:
            try:
                kwargs["protocol"] = ProtocolKind(kwargs["protocol"])
            except ValueError:
                raise ServomexConfigurationError(
                    f"{where}unknown protocol {data.get('protocol')!r}; expected one of "
                    f"{', '.join(p.value for p in ProtocolKind)}"
                ) from None
        if "channels" in data:
            raw = data["channels"]
            if isinstance(raw, str) or not isinstance(raw, Sequence):
                raise ServomexConfigurationError(f"{where}channels must be a list")
            try:
                kwargs["channels"] = tuple(ChannelId.parse(c) for c in raw)
            except ServomexValidationError as exc:
                raise ServomexConfigurationError(f"{where}{exc.message}") from None
        for key in ("address", "baud"):
            if key in kwargs and (
                isinstance(kwargs[key], bool) or not isinstance(kwargs[key], int)
            ):
                raise ServomexConfigurationError(f"{where}{key} must be an integer")
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class IocConfig:
    """Everything one IOC process serves."""

    analysers: tuple[AnalyserConfig, ...]
    allow_calibration: bool = False
    buses: dict[str, tuple[AnalyserConfig, ...]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.analysers:
            raise ServomexConfigurationError("no analyser to serve")
        prefixes = [a.prefix for a in self.analysers]
        for prefix in prefixes:
            others = [p for p in prefixes if p != prefix]
            clash = [p for p in others if p.startswith(prefix) or prefix.startswith(p)]
            if prefixes.count(prefix) > 1 or clash:
                raise ServomexConfigurationError(
                    f"prefixes must be distinct and not prefixes of each other: {prefix!r}"
                )
        buses: dict[str, list[AnalyserConfig]] = {}
        for analyser in self.analysers:
            buses.setdefault(analyser.port, []).append(analyser)
        for port, members in buses.items():
            if len(members) == 1:
                continue
            protocols = {a.protocol for a in members}
            addresses = [a.address for a in members]
            if len(protocols) != 1 or not next(iter(protocols)).is_modbus:
                raise ServomexConfigurationError(
                    f"analysers sharing {port} form an RS485 bus: give them all the same "
                    "Modbus protocol (modbus-rtu or modbus-ascii)"
                )
            if len(set(addresses)) != len(addresses):
                raise ServomexConfigurationError(f"two analysers on {port} share an address")
            if len({a.baud for a in members}) != 1:
                raise ServomexConfigurationError(f"analysers on {port} need the same baud rate")
        object.__setattr__(self, "buses", {port: tuple(members) for port, members in buses.items()})


def load_config(path: str | Path, *, allow_calibration: bool = False) -> IocConfig:
    """Read an IOC configuration from a ``.toml`` or ``.yaml``/``.yml`` file.

    Calibration is never enabled by the file: only by ``allow_calibration`` (the
    command line's ``--allow-calibration``).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServomexConfigurationError(f"cannot read {file}: {exc.strerror}") from None
    data: Any
    if file.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ServomexConfigurationError(f"{file}: {exc}") from None
        entries = data.get("analyser", data.get("analysers"))
    elif file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ServomexConfigurationError(f"{file}: {exc}") from None
        if not isinstance(data, dict):
            raise ServomexConfigurationError(f"{file}: expected a mapping at the top")
        entries = data.get("analysers", data.get("analyser"))
    else:
        raise ServomexConfigurationError(f"{file}: use a .toml, .yaml or .yml file")
    if not isinstance(entries, list) or not entries:
        raise ServomexConfigurationError(f"{file}: no analysers listed")
    extra = set(data) - {"analyser", "analysers"}
    if extra:
        raise ServomexConfigurationError(
            f"{file}: unknown top-level key(s) {', '.join(sorted(extra))} "
            "(calibration is enabled only by --allow-calibration)"
        )
    analysers = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ServomexConfigurationError(f"{file}: analyser {index + 1} is not a table")
        analysers.append(
            AnalyserConfig.from_mapping(entry, where=f"{file}: analyser {index + 1}: ")
        )
    return IocConfig(tuple(analysers), allow_calibration=allow_calibration)

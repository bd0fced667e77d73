"""``ServomexManager``: several Modbus analysers on one or more RS485 lines (multidrop).

::

    async with ServomexManager() as manager:
        await manager.add("o2", "/dev/ttyUSB0", address=30)     # Modbus RTU by default
        await manager.add("co", "/dev/ttyUSB0", address=31)
        await manager.add("stack", "socket://10.0.0.5:4001", protocol=ProtocolKind.MODBUS_ASCII)
        results = await manager.poll()         # {"o2": DeviceResult(value=Frame), …}
        samples = await manager.poll_samples() # one Sample per channel of every analyser

**Lines.** A port string is opened once, whatever the number of analysers on it: the
manager keeps one transport, one :class:`~ophyd_servomex.driver.ModbusLine` and so one
:class:`~ophyd_servomex.driver.PortOwner` per port, and closes the port when the last
analyser on it is removed. An open :class:`~ophyd_servomex.transport.Transport` may be
given instead (it is shared the same way but never closed: the caller owns it), or an
already open Modbus :class:`~ophyd_servomex.driver.Analyzer` (tracked only: the manager
polls it but neither opens nor closes it).

**Concurrency.** Analysers on one line are polled one after the other, in the order they
were added, each transaction through the line's owner task (a multidrop line carries one
transaction at a time, with its 50 ms idle gap before each request). Different lines are
polled at the same time. A silent or failing analyser costs its own line its timeouts but
never stops the others.

**Errors.** :meth:`ServomexManager.poll` always returns the complete mapping, each failure
in its :attr:`DeviceResult.error`. :meth:`ServomexManager.poll_samples` leaves failed
devices out (logged at WARNING). :meth:`ServomexManager.execute_each` follows its policy:
``ErrorPolicy.RAISE`` (the default) waits until every analyser has finished, then raises
:class:`DeviceErrors` (an ``ExceptionGroup``) holding each failure, with the device named
in a note and every result, good and bad, in ``DeviceErrors.results``;
``ErrorPolicy.RETURN`` returns a :class:`DeviceResult` per device instead.

Only the Modbus modes can share a line; continuous mode (the analyser is the only talker)
and AUTO (detection probes the line with its own traffic) are refused with a
:class:`~ophyd_servomex.codec.errors.ServomexConfigurationError`.

The manager's port tasks live in its own task group: enter it with ``async with`` (or call
:meth:`ServomexManager.close` from the task that entered it). ``add`` and ``remove`` may
then be called from any task of the same event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Literal, Self, cast, overload

import anyio
import anyio.abc

from ..codec.checks import check_count, check_non_negative
from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexValidationError,
)
from ..codec.models import Frame, ProtocolKind, Sample, SerialSettings
from ..codec.options import (
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ConnectionOptions,
    parse_protocol,
)
from ..transport import Transport
from .analyzer import Analyzer
from .lines import LinePool, SharedLine, check_line_protocol
from .results import DeviceErrors, DeviceResult, ErrorPolicy, raise_failures

__all__ = ["DeviceErrors", "DeviceResult", "ErrorPolicy", "ServomexManager"]

_LOGGER = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Entry:
    """One managed analyser."""

    name: str
    analyzer: Analyzer
    line: SharedLine | None
    """The shared line the manager opened for it; ``None`` for a tracked Analyzer."""
    address: int | None

    @property
    def group(self) -> object:
        """What serialises this analyser with others: its line (or the Analyzer itself)."""
        if self.line is not None:
            return self.line
        modbus = self.analyzer.modbus
        return modbus.line if modbus is not None else self.analyzer


class ServomexManager:
    """Several Modbus analysers, on one or more lines, polled together (see the module).

    Usage::

        async with ServomexManager() as mgr:
            await mgr.add("a1", "/dev/ttyUSB0", address=1)
            await mgr.add("a2", "/dev/ttyUSB0", address=2)
            samples = await mgr.poll_samples()

    Args:
        retries: extra attempts for Modbus reads on the lines the manager opens.
        inter_frame_idle: line silence before each request on the lines it opens (keep
            0.05 s for real analysers; a zero-latency simulator may use less).
        identify: read each analyser's channel names and units when it is added (a silent
            analyser then fails to add; ``False`` adds it anyway).
    """

    def __init__(
        self,
        *,
        retries: int = DEFAULT_RETRIES,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
        identify: bool = True,
    ) -> None:
        self.retries = check_count("retries", retries)
        self.inter_frame_idle = check_non_negative("inter_frame_idle", inter_frame_idle)
        self.identify = identify
        self._entries: dict[str, _Entry] = {}
        self._reserved: set[str] = set()
        self._lines = LinePool()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._closed = False

    # --- what is managed ------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The analysers' names, in the order they were added (samples carry these)."""
        return tuple(self._entries)

    @property
    def is_open(self) -> bool:
        """True between entering the manager and closing it."""
        return self._entered and not self._closed

    @property
    def ports(self) -> tuple[str, ...]:
        """The ports the manager holds open (one per shared line), in opening order."""
        return self._lines.ports

    def get(self, name: str) -> Analyzer:
        """The :class:`Analyzer` added as ``name``."""
        return self._entry(name).analyzer

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __repr__(self) -> str:
        return f"ServomexManager(names={list(self._entries)!r}, ports={list(self.ports)!r})"

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise ServomexValidationError(
                f"no analyser named {name!r} in the manager (it has {known})"
            ) from None

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise ServomexConfigurationError("a ServomexManager can be entered only once")
        self._entered = True
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._shutdown(exc_type, exc, tb)

    async def close(self) -> None:
        """Close every analyser the manager opened and every port; call it from the task
        that entered the manager (idempotent). Tracked Analyzers stay open."""
        await self._shutdown(None, None, None)

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._closed:
            return None
        self._closed = True
        task_group, self._task_group = self._task_group, None
        with anyio.CancelScope(shield=True):
            for entry in reversed(tuple(self._entries.values())):
                if entry.line is not None:
                    await self._close_analyzer(entry)
            self._entries.clear()
            self._lines.stop_all()
        if task_group is None:
            return None
        if exc is not None:
            task_group.cancel_scope.cancel()
        try:
            # The body's exception is not handed to the task group (which would wrap it
            # in an ExceptionGroup): it leaves the ``async with`` as it was raised.
            await task_group.__aexit__(None, None, None)
        finally:
            self._lines.clear()
        return None

    def _require_running(self) -> anyio.abc.TaskGroup:
        if self._closed:
            raise ServomexConnectionError("the manager is closed")
        if self._task_group is None:
            raise ServomexConfigurationError(
                "enter the manager first: 'async with ServomexManager() as manager:'"
            )
        return self._task_group

    # --- adding and removing --------------------------------------------------------------

    async def add(
        self,
        name: str,
        source: str | Transport | Analyzer,
        *,
        protocol: ProtocolKind = ProtocolKind.MODBUS_RTU,
        address: int = 1,
        serial_settings: SerialSettings | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (per Modbus attempt, not a deadline)
    ) -> Analyzer:
        """Register an analyser under ``name`` and return its (open) :class:`Analyzer`.

        Args:
            name: the name samples and results carry; unique in the manager.
            source: a port string (the manager opens it once and shares it with every
                analyser on it), an open :class:`Transport` (bound and shared, never
                closed by the manager) or a pre-built open Modbus :class:`Analyzer`
                (caller-owned, tracked only; ``protocol`` and ``address`` are then its own).
            protocol: ``MODBUS_RTU`` (default) or ``MODBUS_ASCII``; continuous mode and
                AUTO are refused (the manager coordinates a Modbus multidrop line).
            address: the analyser's Modbus slave address, 1–247, unique on its line.
            serial_settings: for a device path; must match the line's if it is open.
            timeout: seconds per Modbus attempt. A line has one timeout: the first
                analyser added on a port sets it.

        Raises:
            ServomexConfigurationError: continuous/AUTO, a clash with the open line's
                protocol or settings, the address already used on the line.
            ServomexValidationError: a duplicate name or a bad address.
            ServomexConnectionError: the port cannot be opened.
            ServomexTimeoutError: ``identify`` got no answer (nothing is added).
        """
        task_group = self._require_running()
        if not isinstance(name, str) or not name:
            raise ServomexValidationError(f"a device name must be a non-empty string: {name!r}")
        if name in self._entries or name in self._reserved:
            raise ServomexValidationError(f"an analyser named {name!r} is already managed")
        if isinstance(source, Analyzer):
            return self._track(name, source)
        if not isinstance(source, (str, anyio.abc.ByteStream)):
            raise ServomexValidationError(
                f"source must be a port string, an open Transport or an Analyzer, not {source!r}"
            )
        port = source if isinstance(source, str) else str(getattr(source, "port", "") or "")
        options = ConnectionOptions(
            port,
            protocol=parse_protocol(protocol, context=ErrorContext(port=port or None)),
            address=address,
            serial_settings=serial_settings,
            timeout=timeout,
            inter_frame_idle=self.inter_frame_idle,
            retries=self.retries,
            identify=self.identify,
        )
        check_line_protocol(options)
        slave = options.address
        self._reserved.add(name)
        try:
            line = await self._lines.acquire(task_group, source, options)
            try:
                analyzer = await self._open_analyzer(name, line, options)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._lines.release(line, slave)
                raise
            self._entries[name] = _Entry(name, analyzer, line, slave)
            return analyzer
        finally:
            self._reserved.discard(name)

    def _track(self, name: str, analyzer: Analyzer) -> Analyzer:
        context = ErrorContext(
            port=analyzer.port or None, protocol=analyzer.protocol.value, address=analyzer.address
        )
        if not analyzer.protocol.is_modbus:
            state = "not open yet" if analyzer.protocol is ProtocolKind.AUTO else "in that mode"
            raise ServomexConfigurationError(
                f"the manager tracks Modbus analysers only; this one is "
                f"{analyzer.protocol.value} ({state}); open it first, in a Modbus mode",
                context=context,
            )
        self._entries[name] = _Entry(name, analyzer, None, analyzer.address)
        return analyzer

    async def _open_analyzer(
        self, name: str, line: SharedLine, options: ConnectionOptions
    ) -> Analyzer:
        """Open ``name``'s Analyzer on the shared line: the line's options (its first
        analyser's timeout, settings and idle gap), with this analyser's address."""
        assert line.modbus is not None
        address = options.address
        analyzer = Analyzer.from_options(
            replace(line.options, address=address, identify=options.identify),
            source=line.modbus,
            name=name,
        )
        try:
            await analyzer.__aenter__()
        except Exception as exc:
            exc.add_note(f"while adding analyser {name!r} at address {address} on {line.port}")
            raise
        return analyzer

    async def remove(self, name: str) -> None:
        """Remove an analyser: close it if the manager opened it, and close its port when
        it was the last one on it. A tracked Analyzer is only forgotten."""
        entry = self._entry(name)
        del self._entries[name]
        if entry.line is not None:
            with anyio.CancelScope(shield=True):
                await self._close_analyzer(entry)

    async def _close_analyzer(self, entry: _Entry) -> None:
        assert entry.line is not None
        assert entry.address is not None
        try:
            await entry.analyzer.aclose()
        finally:
            await self._lines.release(entry.line, entry.address)

    # --- acting on every analyser ---------------------------------------------------------

    def _select(self, names: Sequence[str] | None) -> list[_Entry]:
        if isinstance(names, str):
            names = [names]
        if names is None:
            return list(self._entries.values())
        return [self._entry(name) for name in names]

    async def _each[T](
        self, names: Sequence[str] | None, fn: Callable[[Analyzer], Awaitable[T]]
    ) -> dict[str, DeviceResult[T]]:
        entries = self._select(names)
        groups: dict[int, list[_Entry]] = {}
        for entry in entries:
            groups.setdefault(id(entry.group), []).append(entry)
        results: dict[str, DeviceResult[T]] = {}

        async def run_group(members: list[_Entry]) -> None:
            for entry in members:
                try:
                    value = await fn(entry.analyzer)
                except Exception as exc:
                    exc.add_note(f"analyser {entry.name!r}")
                    results[entry.name] = DeviceResult(entry.name, error=exc)
                else:
                    results[entry.name] = DeviceResult(entry.name, value)

        if len(groups) == 1:
            await run_group(entries)
        elif groups:
            async with anyio.create_task_group() as task_group:
                for members in groups.values():
                    task_group.start_soon(run_group, members)
        return {entry.name: results[entry.name] for entry in entries}

    async def poll(self, names: Sequence[str] | None = None) -> dict[str, DeviceResult[Frame]]:
        """Read one :class:`Frame` per analyser (or those in ``names``), keyed by name.

        Lines at once, analysers on one line one after the other. Always returns the
        complete mapping, in add order; a device's failure is in its
        :attr:`DeviceResult.error` (``result.unwrap()`` raises it).
        """
        return await self._each(names, lambda analyzer: analyzer.poll())

    async def poll_samples(
        self,
        names: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (per poll, the PollSource signature)
    ) -> list[Sample]:
        """Poll every (or each named) analyser → one flat list of :class:`Sample` rows.

        One sample per channel read, devices in add order. A failed device is left out
        and logged at WARNING (the recorder never sees it); analysers on one line are
        polled back to back through the line's owner, so one device's sweep is never
        interleaved with another's. Raises :class:`ServomexConnectionError` only when
        *every* analyser polled lost its link (the source as a whole is gone:
        ``record(auto_reconnect=True)`` may then rebuild it).
        """

        async def one(analyzer: Analyzer) -> list[Sample]:
            samples = await analyzer.poll_samples(timeout=timeout)
            failure = next((s.error for s in samples if s.error is not None), None)
            if failure is not None:
                raise failure
            return samples

        results = await self._each(names, one)
        samples: list[Sample] = []
        for name, result in results.items():
            if result.error is None and result.value is not None:
                # a tracked Analyzer names its samples itself: they carry the manager's name
                samples.extend(
                    s if s.device == name else replace(s, device=name) for s in result.value
                )
            else:
                _LOGGER.warning("poll of analyser %r failed: %s", name, result.error)
        lost = [r.error for r in results.values() if isinstance(r.error, ServomexConnectionError)]
        if results and len(lost) == len(results):
            raise lost[0]
        return samples

    @overload
    async def execute_each[T](
        self,
        fn: Callable[[Analyzer], Awaitable[T]],
        names: Sequence[str] | None = None,
        *,
        policy: Literal[ErrorPolicy.RAISE] = ErrorPolicy.RAISE,
    ) -> dict[str, T]: ...

    @overload
    async def execute_each[T](
        self,
        fn: Callable[[Analyzer], Awaitable[T]],
        names: Sequence[str] | None = None,
        *,
        policy: Literal[ErrorPolicy.RETURN],
    ) -> dict[str, DeviceResult[T]]: ...

    async def execute_each[T](
        self,
        fn: Callable[[Analyzer], Awaitable[T]],
        names: Sequence[str] | None = None,
        *,
        policy: ErrorPolicy = ErrorPolicy.RAISE,
    ) -> dict[str, T] | dict[str, DeviceResult[T]]:
        """Run ``await fn(analyzer)`` for every analyser (or those in ``names``).

        Same scheduling as :meth:`poll`: one analyser at a time per line, lines at once.
        Example: ``await manager.execute_each(lambda a: a.loopback(b"\\xa5\\x5a"))``.
        """
        results = await self._each(names, fn)
        if ErrorPolicy(policy) is ErrorPolicy.RETURN:
            return results
        raise_failures("execute_each", results)
        return {name: cast("T", r.value) for name, r in results.items()}

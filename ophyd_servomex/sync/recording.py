"""A drift-free recording driven from a blocking caller: :class:`SyncRecording`, and the
helper that starts one in a portal's event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Self

from anyio.from_thread import BlockingPortal

from ..codec.errors import ServomexConfigurationError
from ..codec.models import (
    Sample,
)
from ..driver import AcquisitionSummary, OverflowPolicy, PollSource, Recording
from ..driver.record import _record
from ._portal import _refuse_in_loop


class SyncRecording:
    """A recording driven from a blocking caller: ``for batch in rec`` and ``rec.summary``.

    Use it as a context manager (leaving it stops the recording).
    """

    def __init__(
        self, portal: BlockingPortal, manager: AbstractContextManager[Recording[Sequence[Sample]]]
    ) -> None:
        self._portal = portal
        self._cm = manager
        self._recording: Recording[Sequence[Sample]] | None = None

    def __enter__(self) -> Self:
        _refuse_in_loop("SyncRecording")
        self._recording = self._cm.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._cm.__exit__(exc_type, exc, tb)

    @property
    def _rec(self) -> Recording[Sequence[Sample]]:
        if self._recording is None:
            raise ServomexConfigurationError("enter the recording first: 'with ... as rec:'")
        return self._recording

    @property
    def summary(self) -> AcquisitionSummary:
        """The live :class:`AcquisitionSummary`."""
        return self._rec.summary

    @property
    def rate_hz(self) -> float:
        """Ticks per second."""
        return self._rec.rate_hz

    def stop(self) -> None:
        """End the recording after the tick in progress; iteration then drains and ends."""
        self._portal.call(self._rec.stop)

    def __iter__(self) -> Iterator[Sequence[Sample]]:
        stream = self._rec.stream
        while True:
            _refuse_in_loop("SyncRecording")
            try:
                yield self._portal.call(stream.__anext__)
            except StopAsyncIteration:
                return


def _record_in(
    portal: BlockingPortal,
    source: PollSource,
    *,
    rate_hz: float,
    duration: float | None,
    names: Sequence[str] | None,
    timeout: float | None,
    overflow: OverflowPolicy | str,
    buffer_size: int,
    ticks: int | None,
) -> SyncRecording:
    cm = portal.wrap_async_context_manager(
        _record(
            source,
            rate_hz=rate_hz,
            duration=duration,
            names=names,
            timeout=timeout,
            overflow=overflow,
            buffer_size=buffer_size,
            ticks=ticks,
        )
    )
    return SyncRecording(portal, cm)

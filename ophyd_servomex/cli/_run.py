"""Running a device command: its event loop and logging, a clean stop on Ctrl-C, errors
reported as one line, and progress lines on stderr.

anyio is imported inside the functions that need it, so ``ophyd-servomex --help`` stays
fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TextIO

from ..codec.errors import ServomexError

__all__ = ["print_err", "run_command", "until_interrupted"]


def run_command(
    prog: str, main: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> int:
    """Run ``main(args)`` in an event loop; report a :class:`ServomexError` as one line."""
    import anyio

    try:
        with _logging(getattr(args, "verbose", 0)):
            return anyio.run(main, args)
    except ServomexError as exc:
        print(f"ophyd-servomex {prog}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (``… | head``): stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """Log to stderr at the level ``-v`` asks for; quiet anymodbus's per-attempt retries
    unless verbose (restored afterwards, for callers of ``cli.main`` in-process)."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    retries = logging.getLogger("anymodbus")
    saved = retries.level
    if verbose <= 0 and saved == logging.NOTSET:
        retries.setLevel(logging.ERROR)
    try:
        yield
    finally:
        retries.setLevel(saved)


async def until_interrupted[T](body: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
    """Run ``body()`` until it returns or SIGINT/SIGTERM arrives.

    Returns ``(result, interrupted)``; on a signal the body is cancelled (its ``async
    with`` blocks close the port cleanly) and the result is ``None``. Errors from the body
    are raised as they are.
    """
    import anyio

    interrupted = False
    result: T | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as task_group:

        async def watch() -> None:
            nonlocal interrupted
            try:
                receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                return
            with receiver as signals:
                async for _signum in signals:
                    interrupted = True
                    task_group.cancel_scope.cancel()
                    return

        task_group.start_soon(watch)
        try:
            result = await body()
        except Exception as exc:
            error = exc
        finally:
            task_group.cancel_scope.cancel()
    if error is not None:
        raise error
    return result, interrupted


def print_err(*parts: object, file: TextIO | None = None) -> None:
    """Print to stderr (or ``file``) and flush: progress lines must show at once."""
    print(*parts, file=file or sys.stderr, flush=True)

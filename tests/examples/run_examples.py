"""Run example scripts one after another in this one interpreter, each as ``__main__``.

Usage: ``python run_examples.py EXAMPLES_DIR NAME=SCRIPT ARG… -- NAME=SCRIPT ARG… …``.
Each script runs with ``runpy.run_path(..., run_name="__main__")`` and its own ``sys.argv``,
exactly as ``python SCRIPT ARG…`` would run it, but the heavy imports (bluesky, ophyd-async,
tiled) happen once for all of them. The last line printed is a JSON object: for each NAME,
the exit status, everything the script printed and the seconds it took.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import sys
import time
import traceback


def _jobs(argv: list[str]) -> list[tuple[str, str, list[str]]]:
    jobs: list[tuple[str, str, list[str]]] = []
    current: list[str] = []
    for word in [*argv, "--"]:
        if word == "--":
            if current:
                name, script = current[0].split("=", 1)
                jobs.append((name, script, current[1:]))
            current = []
        else:
            current.append(word)
    return jobs


def main() -> None:
    directory = os.path.abspath(sys.argv[1])
    sys.path.insert(0, directory)  # as `python example_plans/x.py` does
    results: dict[str, dict[str, object]] = {}
    for name, script, args in _jobs(sys.argv[2:]):
        path = os.path.join(directory, script)
        buffer = io.StringIO()
        sys.argv = [path, *args]
        status: object = 0
        started = time.monotonic()
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as stop:
                status = stop.code if stop.code is not None else 0
            except BaseException:
                traceback.print_exc()
                status = "exception"
        results[name] = {
            "status": status,
            "output": buffer.getvalue(),
            "seconds": round(time.monotonic() - started, 2),
        }
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

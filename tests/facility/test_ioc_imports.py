"""What an IOC process imports: FastCS's EPICS transports, not its REST, GraphQL or
launcher, GUI generation (pvi), IPython or setuptools, and nothing of ophyd, bluesky or
tiled (each test runs a fresh interpreter, since this one has them all loaded)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(300)

NOT_IN_AN_IOC = (
    "fastapi",
    "uvicorn",
    "starlette",
    "strawberry",
    "fastcs.transports.rest",
    "fastcs.transports.graphql",
    "fastcs.transports.tango",
    "fastcs.launch",
    "typer",
    "IPython",
    "setuptools",
    "pvi",
    "ophyd",
    "ophyd_async",
    "bluesky",
    "tiled",
    "ophyd_servomex.devices",
)


def _modules(code: str) -> set[str]:
    """The modules loaded after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _offending(modules: set[str]) -> list[str]:
    return sorted(m for m in modules for p in NOT_IN_AN_IOC if m == p or m.startswith(p + "."))


def test_the_ioc_imports_only_the_epics_transports() -> None:
    modules = _modules(
        """
        import asyncio
        from ophyd_servomex.ioc import serve
        from ophyd_servomex.ioc.serve import _ca_transport
        from fastcs.control_system import FastCS
        from fastcs.transports.epics.pva.transport import EpicsPVATransport
        _ca_transport()
        """
    )
    assert _offending(modules) == []
    assert {"fastcs.control_system", "softioc", "p4p", "ophyd_servomex.driver"} <= modules


def test_the_ioc_command_line_imports_no_fastcs_until_it_serves() -> None:
    modules = _modules(
        """
        import contextlib, io
        from ophyd_servomex.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["ioc", "--help"])
        """
    )
    assert _offending(modules) == []
    assert "fastcs" not in modules


def test_the_rest_of_fastcs_still_imports_on_demand() -> None:
    """The stand-in packages run their real ``__init__`` at the first other name asked."""
    script = textwrap.dedent(
        """
        import sys
        import ophyd_servomex.ioc
        from ophyd_servomex.ioc import lean_import
        assert lean_import.installed()
        assert "fastcs.launch" not in sys.modules
        from fastcs import FastCS, launch, __version__
        from fastcs.transports import EpicsCATransport, Transport
        import setuptools_dso
        assert callable(setuptools_dso.find_dso)
        assert callable(launch) and __version__ == "0.14.4"
        from fastcs.transports.epics.pva.gui import PvaEpicsGUI
        assert "pvi" not in sys.modules
        from fastcs.transports.epics import emission
        assert emission.DLSFormatter.__module__.startswith("pvi")  # the real module now
        from fastcs.transports.epics.pva.gui import PvaEpicsGUI as real
        assert isinstance(real, type) and not isinstance(PvaEpicsGUI, type)
        from IPython.terminal.embed import InteractiveShellEmbed
        assert isinstance(InteractiveShellEmbed, type)
        print("OK")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "OK"

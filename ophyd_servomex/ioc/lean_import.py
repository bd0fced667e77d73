"""Import only the parts of FastCS an IOC serves with: the EPICS PVA and CA transports.

``import fastcs`` runs the package's ``__init__``, which imports every transport FastCS
has (REST with fastapi and uvicorn, GraphQL with strawberry, Tango when installed), its
command-line launcher (typer) and, through ``fastcs.control_system``, IPython's embedded
shell; and ``from setuptools_dso import find_dso`` in the EPICS libraries runs
``setuptools_dso``'s ``__init__``, which imports setuptools. An IOC uses none of them, and
neither does it generate GUI screens or docs (``pvi`` and its pydantic models). They were
more than half of its start-up (docs/facility.md, "Start-up time").

:func:`install` (called by ``ophyd_servomex.ioc`` before it imports FastCS) puts light
stand-ins for the packages ``fastcs``, ``fastcs.transports`` and ``setuptools_dso`` into
``sys.modules``: their submodules import as usual, and the first access to any other name
of such a package runs the real ``__init__`` into the stand-in, so ``from fastcs import
launch`` still works, only later. While ``fastcs.control_system`` is imported, IPython's
embed module is replaced by a function that imports the real shell when called (only an
interactive FastCS uses it); that stand-in is removed again afterwards. FastCS's GUI
and docs modules are stand-ins whose functions and classes load the real modules when
called (the transports call them only when given GUI or docs options). Nothing is done
when FastCS was imported already. ``fastcs==0.14.4`` is pinned.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

__all__ = ["install", "installed"]

_PACKAGES = ("fastcs", "fastcs.transports")
_IPYTHON = ("IPython", "IPython.terminal", "IPython.terminal.embed")
_state = {"installed": False}


def installed() -> bool:
    """True once :func:`install` put its stand-ins in place in this process."""
    return _state["installed"]


def _stand_in(name: str) -> types.ModuleType:
    """A package module with the real one's path and spec but an empty namespace; its
    ``__init__`` runs into it on the first missing attribute."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.origin is None:
        raise RuntimeError(f"{name} is not a package (ophyd_servomex.ioc needs fastcs 0.14.4)")
    module = types.ModuleType(name)
    module.__spec__ = spec
    module.__path__ = list(spec.submodule_search_locations)
    module.__file__ = spec.origin
    module.__package__ = name
    module.__loader__ = spec.loader
    origin = spec.origin
    done: list[bool] = []

    def __getattr__(attribute: str) -> Any:  # PEP 562 module hook
        if attribute.startswith("__") or done:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        done.append(True)
        with open(origin, encoding="utf-8") as source:
            code = compile(source.read(), origin, "exec")
        exec(code, module.__dict__)  # the package's own __init__
        return getattr(module, attribute)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


_DEFERRED = {  # FastCS's GUI and docs generation (pvi and its pydantic models): unused here
    "fastcs.transports.epics.gui": ("EpicsGUI",),
    "fastcs.transports.epics.pva.gui": ("PvaEpicsGUI",),
    "fastcs.transports.epics.emission": ("emit_docs_files", "emit_gui_files"),
}


def _load_deferred() -> None:
    """Replace the deferred stand-ins by the real modules (in dependency order)."""
    for name in _DEFERRED:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_ophyd_servomex_deferred", False):
            del sys.modules[name]
    for name in _DEFERRED:
        importlib.import_module(name)


def _real(value: Any) -> Any:
    target = getattr(value, "_ophyd_servomex_target", None)
    if target is None:
        return value
    _load_deferred()
    return getattr(sys.modules[target[0]], target[1])


def _deferred_module(name: str, names: tuple[str, ...]) -> types.ModuleType:
    """A module whose names are stand-ins loading the real module when called."""
    module = types.ModuleType(name)
    module._ophyd_servomex_deferred = True  # type: ignore[attr-defined]

    def deferred(attribute: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            real = _real(call)
            return real(*(_real(a) for a in args), **{k: _real(v) for k, v in kwargs.items()})

        call._ophyd_servomex_target = (name, attribute)  # type: ignore[attr-defined]
        call.__name__ = call.__qualname__ = attribute
        return call

    for attribute in names:
        setattr(module, attribute, deferred(attribute))

    def __getattr__(attribute: str) -> Any:  # PEP 562 module hook
        if attribute.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        _load_deferred()
        return getattr(sys.modules[name], attribute)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def _interactive_shell(*args: Any, **kwargs: Any) -> Any:
    """IPython's ``InteractiveShellEmbed``, imported when a shell is really wanted."""
    from IPython.terminal.embed import InteractiveShellEmbed

    return InteractiveShellEmbed(*args, **kwargs)  # type: ignore[no-untyped-call]


def install() -> None:
    """Import FastCS's control system with only the modules it needs (see module doc)."""
    if _state["installed"] or "fastcs" in sys.modules:
        return
    package = sys.modules["fastcs"] = _stand_in("fastcs")
    # find_spec of a submodule imports its parent: the stand-in must be in place first
    transports = sys.modules["fastcs.transports"] = _stand_in("fastcs.transports")
    package.transports = transports  # type: ignore[attr-defined]
    if "setuptools_dso" not in sys.modules:  # EPICS' libraries want only its runtime
        dso = sys.modules["setuptools_dso"] = _stand_in("setuptools_dso")
        from setuptools_dso.runtime import dylink_prepare_dso, find_dso  # type: ignore[import-untyped]

        dso.find_dso = find_dso  # type: ignore[attr-defined]
        dso.dylink_prepare_dso = dylink_prepare_dso  # type: ignore[attr-defined]
    from fastcs._version import __version__
    from fastcs.transports.transport import Transport

    package.__version__ = __version__  # type: ignore[attr-defined]
    transports.Transport = Transport  # type: ignore[attr-defined]
    for name, names in _DEFERRED.items():
        sys.modules[name] = _deferred_module(name, names)
    shell_stand_ins = [name for name in _IPYTHON if name not in sys.modules]
    for name in shell_stand_ins:
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules[name] = module
    if "IPython.terminal.embed" in shell_stand_ins:
        sys.modules["IPython.terminal.embed"].InteractiveShellEmbed = _interactive_shell  # type: ignore[attr-defined]
    try:
        import fastcs.control_system  # noqa: F401
    finally:
        for name in shell_stand_ins:
            del sys.modules[name]
    _state["installed"] = True

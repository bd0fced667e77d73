"""The embedded catalog's in-process tiled app: what it is spared, and that it still works.

:class:`~ophyd_servomex.catalog.embedded_app.NoStreamsMiddleware` answers "close the stream"
itself (the app has no streams); :func:`resolve_dependency_overrides` applies FastAPI
dependency overrides once instead of per request. Both are shown on a small FastAPI app
(exact answers, which function ran) and on a real embedded catalog.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import Depends, FastAPI, Security
from fastapi.security import SecurityScopes

from ophyd_servomex.catalog import close_catalog, open_catalog
from ophyd_servomex.catalog.embedded_app import (
    NoStreamsMiddleware,
    resolve_dependency_overrides,
)

# --- NoStreamsMiddleware -------------------------------------------------------------------


def _asgi(app: Any, method: str, path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Send one HTTP request through ``NoStreamsMiddleware(app)``; the messages sent back,
    and the paths the inner app saw."""
    seen: list[str] = []
    sent: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path}
    anyio.run(NoStreamsMiddleware(inner if app is None else app), scope, receive, send)
    return sent, seen


def test_a_stream_close_is_answered_without_the_app() -> None:
    sent, seen = _asgi(None, "DELETE", "/api/v1/stream/close/run/primary")
    assert seen == []
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4")],
        },
        {"type": "http.response.body", "body": b"null"},
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/stream/close/run"),  # not a close
        ("DELETE", "/api/v1/metadata/run"),  # a real deletion
        ("DELETE", "/api/v1/stream/single/run"),
    ],
)
def test_every_other_request_reaches_the_app(method: str, path: str) -> None:
    sent, seen = _asgi(None, method, path)
    assert seen == [path]
    assert sent[0]["status"] == 204


# --- resolve_dependency_overrides ----------------------------------------------------------


def _settings() -> str:
    return "default"


def _overridden_settings() -> str:
    return "override"


def _scoped(security_scopes: SecurityScopes, settings: str = Depends(_settings)) -> str:
    return f"{settings}:{','.join(security_scopes.scopes)}"


def _small_app() -> FastAPI:
    app = FastAPI()

    @app.get("/direct")
    def direct(settings: str = Depends(_settings)) -> str:
        return settings

    @app.get("/scoped")
    def scoped(value: str = Security(_scoped, scopes=["read:data"])) -> str:
        return value

    from fastapi import APIRouter

    router = APIRouter(prefix="/api")

    @router.get("/nested")
    def nested(value: str = Depends(_scoped)) -> str:
        return value

    app.include_router(router)
    app.dependency_overrides[_settings] = _overridden_settings
    return app


@pytest.fixture
def rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The calls FastAPI makes to rebuild a dependency tree (by request, once overridden)."""
    import fastapi.dependencies.utils as fastapi_utils

    calls: list[Any] = []
    original = fastapi_utils.get_dependant

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["call"])
        return original(**kwargs)

    monkeypatch.setattr(fastapi_utils, "get_dependant", counting)
    return calls


def _test_client(app: FastAPI) -> Any:
    with warnings.catch_warnings():  # starlette's own anyio deprecation, not this test's
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    return TestClient(app)


def test_overrides_apply_once_with_the_same_answers(rebuilds: list[Any]) -> None:
    app = _small_app()
    client = _test_client(app)
    before = [client.get(path).json() for path in ("/direct", "/scoped", "/api/nested")]
    assert before == ["override", "override:read:data", "override:"]
    assert rebuilds, "FastAPI rebuilt nothing per request: this test shows nothing"
    assert resolve_dependency_overrides(app) is True
    rebuilds.clear()
    after = [client.get(path).json() for path in ("/direct", "/scoped", "/api/nested")]
    assert after == before
    assert rebuilds == []  # nothing rebuilt per request any more
    assert not app.dependency_overrides  # what FastAPI checks
    assert app.dependency_overrides[_settings] is _overridden_settings  # still readable
    assert resolve_dependency_overrides(app) is False  # once is enough


def test_an_app_without_overrides_is_left_as_built() -> None:
    app = FastAPI()
    assert resolve_dependency_overrides(app) is False
    assert app.dependency_overrides == {}
    assert type(app.dependency_overrides) is dict


def test_an_app_of_another_shape_is_left_as_built() -> None:
    class Odd:
        def __init__(self) -> None:
            self.dependency_overrides = {_settings: _overridden_settings}
            self.router = None  # no routes to read

    odd = Odd()
    assert resolve_dependency_overrides(odd) is False
    assert type(odd.dependency_overrides) is dict


# --- on a real embedded catalog -------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Any]:
    cat = open_catalog(tmp_path / "catalog")
    yield cat
    close_catalog(cat)


def test_the_embedded_app_serves_without_rebuilding_dependencies(
    catalog: Any, rebuilds: list[Any]
) -> None:
    app = catalog.context.http_client.app
    assert not app.dependency_overrides  # what FastAPI checks per request
    assert len(app.dependency_overrides) == 1
    run = catalog.create_container(key="run-embedded", metadata={})
    stream = run.create_container(key="primary", metadata={"n": 1})
    stream.update_metadata(metadata={"n": 2}, drop_revision=True)
    stream.close_stream()  # answered by the middleware
    run.close_stream()
    assert rebuilds == []
    assert run["primary"].metadata["n"] == 2
    assert list(catalog) == ["run-embedded"]


def test_closing_a_stream_of_the_embedded_catalog_never_reaches_the_app(
    catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiled.catalog.adapter as adapter_module

    closed: list[Any] = []

    async def close_stream(self: Any) -> None:
        closed.append(self)

    monkeypatch.setattr(adapter_module.CatalogNodeAdapter, "close_stream", close_stream)
    run = catalog.create_container(key="run", metadata={})
    run.close_stream()
    assert closed == []

"""The in-process tiled app behind an embedded catalog, and what it is spared.

An embedded catalog is served by a tiled app running in this process (see
:mod:`~ophyd_servomex.catalog.client`). That app has no streaming cache and no webhooks:
nobody can subscribe to its nodes, so "closing a stream" (``DELETE
/api/v1/stream/close/<path>``, sent by ``TiledWriter`` for every node of a run at its stop)
does nothing there but resolve the node through the whole request stack — about 25–35 ms of
the interpreter each, three per run, at the moment the run's stop waits for the catalog.
:class:`NoStreamsMiddleware` answers those requests at once, as the endpoint would (``200``,
``null``).

tiled's app also overrides one dependency (its settings). While *any* override is set,
FastAPI rebuilds every dependency of every request from the signatures (``inspect``, ~160
``get_dependant`` calls per tiled request: half of a request's CPU, a known FastAPI
behaviour). :func:`resolve_dependency_overrides` applies the overrides once, to the
dependency trees the routes already hold, so each request reuses them; the app's settings
are those the override gives, as before. Both only ever touch the app this package built.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["NoStreamsMiddleware", "resolve_dependency_overrides"]

_CLOSE_STREAM = "/api/v1/stream/close/"


class NoStreamsMiddleware:
    """ASGI middleware: answer "close the stream" without running the app (no streams here)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass every request to the app but a stream close, which is answered ``200 null``."""
        if (
            scope["type"] == "http"
            and scope["method"] == "DELETE"
            and scope["path"].startswith(_CLOSE_STREAM)
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4")],
                }
            )
            await send({"type": "http.response.body", "body": b"null"})
            return
        await self.app(scope, receive, send)


class _AppliedOverrides(dict[Any, Any]):
    """The app's overrides, already applied to its routes: still there for whoever looks one
    up (tiled's start-up and shut-down read the settings override), false to FastAPI, so its
    request handling does not rebuild the dependency trees."""

    def __bool__(self) -> bool:
        return False


def _route_dependants(routes: list[Any]) -> Iterator[Any]:
    """Every dependency tree the routes hold, included routers' effective routes too."""
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if candidates is not None:  # an included router: the routes it serves
            yield from _route_dependants(list(candidates()))
            continue
        for holder in (route, getattr(route, "starlette_route", None)):
            dependant = getattr(holder, "dependant", None)
            if dependant is not None:
                yield dependant


def resolve_dependency_overrides(app: Any) -> bool:
    """Apply ``app.dependency_overrides`` to the dependency trees of the app's routes, once.

    Each dependency the overrides replace is rebuilt from its override exactly as FastAPI
    does per request (same path, name, scopes, scope); then the overrides mapping stays
    readable but reads as empty to FastAPI. Returns False, changing nothing, when the app
    has no overrides or its routes are not shaped as this FastAPI version's (the app then
    works as built, only slower).
    """
    overrides = getattr(app, "dependency_overrides", None)
    if not isinstance(overrides, dict) or not overrides or isinstance(overrides, _AppliedOverrides):
        return False
    try:
        from fastapi.dependencies.utils import get_dependant

        roots = list(_route_dependants(list(app.router.routes)))
        replacements: list[tuple[Any, int, Any]] = []
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            dependant = stack.pop()
            if id(dependant) in seen:
                continue
            seen.add(id(dependant))
            for index, sub in enumerate(dependant.dependencies):
                override = overrides.get(sub.call)
                if override is not None:
                    inherited = [*(sub.parent_oauth_scopes or ()), *(sub.own_oauth_scopes or ())]
                    scopes = list(dict.fromkeys(inherited))
                    sub = get_dependant(
                        path=sub.path,
                        call=override,
                        name=sub.name,
                        parent_oauth_scopes=scopes,
                        scope=sub.scope,
                        concurrency=sub.concurrency,
                    )
                    replacements.append((dependant, index, sub))
                stack.append(sub)
    except (AttributeError, TypeError):  # another FastAPI's internals: leave the app as built
        return False
    if not roots:
        return False
    for dependant, index, sub in replacements:
        dependant.dependencies[index] = sub
    app.dependency_overrides = _AppliedOverrides(overrides)
    return True

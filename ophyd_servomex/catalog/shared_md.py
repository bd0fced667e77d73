"""RunEngine metadata kept in Redis, so several processes share one sequence of scan ids.

A beamline runs more than one RunEngine: the queue server's worker, a console, scripts. Each
counts ``scan_id`` on its own (``RE.md["scan_id"] + 1`` at every ``open_run``), so two of them
writing one catalog hand out the same numbers. Facilities keep ``RE.md`` in Redis instead
(``RE.md = RedisJSONDict(redis_client, prefix=...)``, the ``redis-json-dict`` package), so
every RunEngine sees the same metadata.

That alone does not make scan ids unique: bluesky's default ``scan_id_source`` reads
``md["scan_id"]``, adds one and writes it back, and with a ``RedisJSONDict`` those are two
separate Redis commands (``GET``, then ``SET``). Two processes opening runs at the same moment
both read 7 and both write 8. :func:`use_shared_metadata` closes the gap:

- the next scan id comes from one atomic ``INCR`` of the shared key (``scan_id_source``);
- assigning ``RE.md["scan_id"] = n`` (bluesky's write-back, or seeding from the catalog)
  raises the shared counter to ``n`` atomically and never lowers it, so a late write-back or a
  seed cannot hand a number out twice (:meth:`SharedMetadata.reset_scan_id` lowers it on
  purpose);
- ``RE.md["scan_id"]`` read in a process is the scan id of the last run *that* RunEngine
  opened (what its start document says), not whatever another process took since.

Other keys are plain ``RedisJSONDict`` entries (read and written through on every access),
except ``versions``, which stays per process: each RunEngine records its own software.

>>> from ophyd_servomex.catalog.shared_md import subscribe_shared
>>> subscribe_shared(RE, catalog, "redis://127.0.0.1:6379/0", prefix="smx-md-")

or, by hand and in this order, ``subscribe_writer(RE, catalog)`` then
``use_shared_metadata(RE, "redis://…", prefix, catalog=catalog)``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..codec.errors import ServomexValidationError
from .errors import CatalogAccessError

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_PREFIX",
    "REDIS_ENV",
    "REDIS_PREFIX_ENV",
    "SharedMetadata",
    "redis_client",
    "subscribe_shared",
    "use_shared_metadata",
]

DEFAULT_PREFIX = "ophyd-servomex-md-"
"""Key prefix of the shared metadata when none is given (one Redis can hold several sets)."""

REDIS_ENV = "OPHYD_SERVOMEX_REDIS"
"""Environment variable naming the Redis that holds shared RunEngine metadata
(``redis://host:port/db``); the queue-server profile reads it."""

REDIS_PREFIX_ENV = "OPHYD_SERVOMEX_REDIS_PREFIX"
"""Environment variable overriding :data:`DEFAULT_PREFIX`."""

SCAN_ID = "scan_id"
LOCAL_KEYS = ("versions",)
"""Keys kept in the process, never shared: ``versions`` names this process's software."""

# KEYS[1] = the scan_id key, ARGV[1] = an integer: the counter becomes max(counter, ARGV[1]).
# A missing or non-integer counter is replaced. Returns the counter afterwards.
_RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]))
local wanted = tonumber(ARGV[1])
if current == nil or current ~= math.floor(current) or wanted > current then
    redis.call('SET', KEYS[1], ARGV[1])
    return wanted
end
return current
"""


def _redacted(url: str) -> str:
    """``url`` without its userinfo (a Redis password never reaches a message)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _as_scan_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ServomexValidationError(
            f"a scan id is an integer >= 0, not {value!r} ({type(value).__name__})"
        )
    return value


class SharedMetadata(MutableMapping[str, Any]):
    """``RE.md`` kept in Redis (a ``RedisJSONDict``), with an atomic, shared ``scan_id``.

    ``client`` is a ``redis.Redis``; every key lives at ``prefix + key`` as JSON. Keys named
    in ``local`` (``versions``) live in this object only. Use :meth:`next_scan_id` as the
    RunEngine's ``scan_id_source`` (:func:`use_shared_metadata` does both).
    """

    atomic_scan_ids = True
    """:meth:`next_scan_id` is unique across processes: a catalog's scan-id source that
    wraps it uses it as it is (see :class:`~ophyd_servomex.catalog.scan_ids.ScanIdSource`)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        local: Mapping[str, Any] | None = None,
    ) -> None:
        # the package's class is untyped (no annotations): build it through Any
        from redis_json_dict import redis_json_dict as rjd

        json_dict: Any = rjd.RedisJSONDict
        if not prefix:
            raise ServomexValidationError("the shared-metadata prefix must not be empty")
        self.client = client
        self.prefix = prefix
        self._shared: MutableMapping[str, Any] = json_dict(client, prefix=prefix)
        self._local: dict[str, Any] = dict(local or {})
        self._last_scan_id: int | None = None
        self._raise_to: Any = client.register_script(_RAISE_TO)

    @property
    def scan_id_key(self) -> str:
        """The Redis key holding the shared counter (JSON, i.e. a decimal integer)."""
        return f"{self.prefix}{SCAN_ID}"

    # --- scan ids ---------------------------------------------------------------------------

    def next_scan_id(self, md: Mapping[str, Any] | None = None) -> int:
        """Take the next scan id: one atomic ``INCR`` of the shared counter.

        The RunEngine's ``scan_id_source`` (it passes its ``md``, unused here). No two calls,
        in any process sharing the prefix, return the same number.
        """
        value = int(self.client.incr(self.scan_id_key))
        self._last_scan_id = value
        return value

    def shared_scan_id(self) -> int:
        """The shared counter: the highest scan id taken by any process (0 when unset)."""
        raw = self.client.get(self.scan_id_key)
        return 0 if raw is None else int(raw)

    def raise_scan_id(self, at_least: int) -> int:
        """Raise the shared counter to ``at_least`` unless it is already higher (atomic).

        Returns the counter afterwards; the next run gets one more.
        """
        value = _as_scan_id(at_least)
        return int(self._raise_to(keys=[self.scan_id_key], args=[value]))

    def reset_scan_id(self, value: int = 0) -> None:
        """Set the shared counter to ``value``, lower or not: for a deliberate restart of the
        numbering only (runs already in the catalog keep their numbers, so later ones repeat
        them)."""
        self.client.set(self.scan_id_key, _as_scan_id(value))
        self._last_scan_id = None

    # --- the mapping ------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in self._local:
            return self._local[key]
        if key == SCAN_ID and self._last_scan_id is not None:
            return self._last_scan_id
        return self._shared[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._local or key in LOCAL_KEYS:
            self._local[key] = value
        elif key == SCAN_ID:
            scan_id = _as_scan_id(value)
            self.raise_scan_id(scan_id)
            # bluesky writes back the number it just took: keep it as this process's last
            if scan_id != self._last_scan_id:
                self._last_scan_id = None
        else:
            self._shared[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self._local:
            del self._local[key]
            return
        if key not in self._shared:
            raise KeyError(key)
        if key == SCAN_ID:
            self._last_scan_id = None
        del self._shared[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._local
        for key in self._shared:
            if key not in self._local:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if key in self._local:
            return True
        if not isinstance(key, str):
            return False
        return self.client.exists(f"{self.prefix}{key}") > 0

    def update_missing(self, entries: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Store each entry whose key is not shared yet (existing shared values win)."""
        items = entries.items() if isinstance(entries, Mapping) else entries
        for key, value in items:
            if key not in self:
                self[key] = value

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        # bluesky deep-copies its ChainMap of metadata at open_run: a plain snapshot
        return copy.deepcopy({key: self[key] for key in self}, memo)

    def __repr__(self) -> str:
        return f"SharedMetadata(prefix={self.prefix!r}, keys={sorted(self)!r})"


def redis_client(url: str) -> redis.Redis:
    """A ``redis.Redis`` for ``url``, checked with a ``PING``.

    Raises :class:`~ophyd_servomex.catalog.errors.CatalogAccessError` (without any password
    from the URL) when Redis cannot be reached.
    """
    import redis

    where = _redacted(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        client.ping()
    except (redis.RedisError, ValueError) as error:
        raise CatalogAccessError(
            f"cannot reach Redis for shared metadata: {type(error).__name__}: "
            f"{_redacted(str(error))}",
            location=where,
        ) from error
    return client


def use_shared_metadata(
    RE: Any,  # the Bluesky name for a RunEngine
    redis_url: str | redis.Redis | None = None,
    prefix: str | None = None,
    *,
    catalog: Any = None,
) -> SharedMetadata:
    """Keep ``RE.md`` in Redis and take scan ids from one atomic, shared counter.

    ``redis_url`` is a ``redis://`` URL or a ``redis.Redis`` client (default: the
    ``OPHYD_SERVOMEX_REDIS`` environment variable); ``prefix`` the key prefix (default
    ``OPHYD_SERVOMEX_REDIS_PREFIX``, else :data:`DEFAULT_PREFIX`): every RunEngine using the
    same Redis and prefix shares metadata and scan ids. The RunEngine's own entries are kept
    where Redis has none yet (``versions`` stays per process). With ``catalog``, the counter
    is raised to the catalog's highest scan id (atomically, so processes starting together
    cannot lower each other's numbers).

    Sets ``RE.md`` and ``RE.scan_id_source``; returns the :class:`SharedMetadata`. Call it
    *after* ``subscribe_writer`` (or use :func:`subscribe_shared`): it replaces the scan-id
    source that ``subscribe_writer`` installs.
    """
    source = redis_url if redis_url is not None else os.environ.get(REDIS_ENV) or None
    if source is None:
        raise ServomexValidationError(
            f"no Redis for shared metadata: pass a redis:// URL or set {REDIS_ENV}"
        )
    client = redis_client(source) if isinstance(source, str) else source
    if prefix is None:
        prefix = os.environ.get(REDIS_PREFIX_ENV) or DEFAULT_PREFIX
    previous: Mapping[str, Any] = RE.md
    local = {key: previous[key] for key in LOCAL_KEYS if key in previous}
    shared = SharedMetadata(client, prefix, local=local)
    earlier_scan_id = previous.get(SCAN_ID)
    shared.update_missing((k, v) for k, v in previous.items() if k not in (*LOCAL_KEYS, SCAN_ID))
    if earlier_scan_id is not None:
        shared.raise_scan_id(_as_scan_id(earlier_scan_id))
    if catalog is not None:
        from .scan_ids import latest_scan_id

        shared.raise_scan_id(latest_scan_id(catalog))
    RE.md = shared
    # The one source of scan ids. It replaces a catalog's own source installed by
    # subscribe_writer (max(next, catalog's highest + 1, ...)): mixing the two lets a process
    # jump past the counter to a number another process is about to take from it.
    RE.scan_id_source = shared.next_scan_id
    return shared


def subscribe_shared(
    RE: Any,  # the Bluesky name for a RunEngine
    catalog: Any,
    redis_url: str | redis.Redis | None = None,
    prefix: str | None = None,
    **writer_options: Any,
) -> tuple[Any, SharedMetadata]:
    """:func:`~ophyd_servomex.catalog.writer.subscribe_writer`, then :func:`use_shared_metadata`.

    The order matters: the shared counter must be the RunEngine's ``scan_id_source`` last,
    seeded from the catalog. ``writer_options`` go to ``subscribe_writer``. Returns the
    :class:`~ophyd_servomex.catalog.writer.CatalogSubscription` and the
    :class:`SharedMetadata`.
    """
    from .writer import subscribe_writer

    subscription = subscribe_writer(RE, catalog, **writer_options)
    shared = use_shared_metadata(RE, redis_url, prefix, catalog=catalog)
    return subscription, shared

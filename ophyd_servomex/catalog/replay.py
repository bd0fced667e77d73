"""Find runs in a catalog and turn them into tables and summaries."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .client import catalog_location
from .errors import AmbiguousRunError, CatalogError, RunNotFoundError

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped, unused-ignore]

__all__ = ["get_run", "list_runs", "local_times", "run_summary", "run_table"]

_INTEGER = re.compile(r"[+-]?\d+")
_MIN_PARTIAL_UID = 5
_MAX_CANDIDATES = 50


def get_run(catalog: Any, key: str | int) -> Any:
    """The run for a uid, a partial uid (5+ characters), a scan id or a negative index.

    ``key`` may be an ``int`` or a string: ``"3"`` and ``3`` are scan id 3, ``-1`` / ``"-1"``
    the most recent run, ``-2`` the one before; any other string is a uid or its beginning. A
    digit string that is no scan id is tried as a partial uid as well.
    Raises :class:`~ophyd_servomex.catalog.errors.RunNotFoundError` when nothing matches,
    :class:`~ophyd_servomex.catalog.errors.AmbiguousRunError` when several runs share the scan
    id (catalogs written by older versions) or a partial uid (``.uids`` lists them), and
    :class:`~ophyd_servomex.catalog.errors.CatalogError` for an unusable key.
    """
    where = _where(catalog)
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise CatalogError(
            f"a run key is a uid, a scan id or an index, not {key!r}", location=where
        )
    if isinstance(key, int):
        return _by_number(catalog, key, key, where)
    text = key.strip()
    if not _INTEGER.fullmatch(text):
        return _by_uid(catalog, text, key, where)
    try:
        return _by_number(catalog, int(text), key, where)
    except RunNotFoundError:
        if text.startswith(("+", "-")) or len(text) < _MIN_PARTIAL_UID:
            raise
    return _by_uid(catalog, text, key, where)


def _by_number(catalog: Any, number: int, key: object, where: str) -> Any:
    if number == 0:
        raise CatalogError("scan ids start at 1 and indexes from the end at -1", location=where)
    if number > 0:
        from tiled.queries import Key

        matches = catalog.search(Key("start.scan_id") == number)
        runs = list(matches.values().head(_MAX_CANDIDATES))
        if not runs:
            raise RunNotFoundError(f"no run has scan_id {number}", key=key, location=where)
        if len(runs) > 1:
            uids = [str(run.metadata.get("start", {}).get("uid")) for run in runs]
            raise AmbiguousRunError(
                f"{len(matches)} runs have scan_id {number}: {', '.join(uids)}; "
                "ask for one by its uid (or its first characters)",
                key=key,
                uids=uids,
                location=where,
            )
        return runs[0]
    try:
        return catalog.values()[number]
    except IndexError:
        raise RunNotFoundError(
            f"the catalog holds fewer than {-number} run(s)", key=key, location=where
        ) from None


def _by_uid(catalog: Any, text: str, key: object, where: str) -> Any:
    if len(text) < _MIN_PARTIAL_UID:
        raise CatalogError(
            f"a partial uid needs at least {_MIN_PARTIAL_UID} characters: {text!r}",
            location=where,
        )
    try:
        return catalog[text]
    except KeyError:
        raise RunNotFoundError(
            f"no run uid starts with {text!r}", key=key, location=where
        ) from None
    except ValueError as error:  # several matches
        uids = re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", str(error))
        raise AmbiguousRunError(str(error), key=key, uids=uids, location=where) from None


def _where(catalog: Any) -> str:
    try:
        return str(catalog_location(catalog))
    except Exception:  # a foreign client without a context: the message just lacks it
        return ""


def _data_key_order(stream: Any) -> list[str]:
    """The stream's data keys: hinted ones first, then the rest, each group sorted by name.

    (Neither tiled's metadata nor device hints keep a meaningful order, so names decide within
    each group.)
    """
    keys = stream.metadata.get("data_keys", {})
    hinted = set(_hinted_keys(stream))
    return sorted(hinted) + sorted(k for k in keys if k not in hinted)


def _hinted_keys(stream: Any) -> list[str]:
    """The data keys named in the stream's hints (``{device: {"fields": [...]}}``)."""
    keys = stream.metadata.get("data_keys", {})
    hinted: list[str] = []
    for hint in (stream.metadata.get("hints") or {}).values():
        fields = hint.get("fields") if isinstance(hint, dict) else None
        hinted.extend(f for f in fields or [] if f in keys and f not in hinted)
    return hinted


def local_times(seconds: Any) -> Any:
    """Epoch seconds (a pandas Series) as time-zone-aware local date-times."""
    import pandas
    from dateutil.tz import tzlocal  # type: ignore[import-untyped, unused-ignore]

    return pandas.to_datetime(seconds, unit="s", utc=True).dt.tz_convert(tzlocal())


def run_table(
    run: Any,
    stream: str = "primary",
    *,
    timestamps: bool = False,
    epoch_time: bool = False,
) -> pandas.DataFrame:
    """One stream of a run as a table: one row per event, indexed by ``seq_num``.

    Columns: ``time`` (the event time as a local, time-zone-aware date-time; seconds since the
    epoch with ``epoch_time``), then the stream's data keys: the hinted ones (the channels the
    device says matter) first, then the rest, each group sorted by name; with ``timestamps``
    also ``ts_<key>`` (each reading's own timestamp, epoch seconds). ``table.attrs["units"]``
    maps each data key to its units (``None`` when it has none) and ``table.attrs["hinted"]``
    lists the hinted keys. A stream with no events gives an empty table with those columns.
    Raises :class:`~ophyd_servomex.catalog.errors.CatalogError` when the run has no such stream.
    """
    import pandas

    if stream not in run:
        raise CatalogError(
            f"run {run.metadata['start']['uid']} has no stream {stream!r} "
            f"(streams: {', '.join(run) or 'none'})"
        )
    node = run[stream]
    keys = _data_key_order(node)
    base = getattr(node, "base", None)
    if base is not None and "internal" in base:
        frame = base["internal"].read()
    elif base is not None:
        frame = pandas.DataFrame(columns=["seq_num", "time", *keys])
    else:  # not a SQL-backed (v3) stream: go through xarray
        frame = node.read().to_dataframe().reset_index()
        frame.insert(0, "seq_num", range(1, len(frame) + 1))
    present = [k for k in keys if k in frame.columns]
    columns = ["time", *present]
    if timestamps:
        columns += [f"ts_{k}" for k in keys if f"ts_{k}" in frame.columns]
    frame = frame.sort_values("seq_num") if len(frame) else frame
    table = frame.set_index("seq_num")[columns]
    table.index = table.index.astype("int64")
    if not epoch_time:
        table = table.copy()
        table["time"] = local_times(table["time"].astype("float64"))
    described = node.metadata.get("data_keys", {})
    hinted = set(_hinted_keys(node))
    table.attrs["units"] = {k: described.get(k, {}).get("units") or None for k in present}
    table.attrs["hinted"] = [k for k in present if k in hinted]
    return table


def run_summary(run: Any) -> dict[str, Any]:
    """The essentials of a run from its metadata (no event data is read).

    Keys: ``uid``, ``scan_id``, ``plan_name``, ``start_time``, ``stop_time`` (``None`` while
    running), ``duration``, ``exit_status`` (``None`` while running), ``reason``, ``streams``
    (names), ``num_events`` (per stream, from the stop document, else counted) and
    ``data_keys`` (per stream: data key -> units, ``None`` when it has none; keys sorted).
    """
    start = dict(run.metadata.get("start") or {})
    stop = dict(run.metadata.get("stop") or {})
    streams = list(run)
    data_keys: dict[str, dict[str, str | None]] = {}
    for name in streams:
        described = run[name].metadata.get("data_keys", {})
        data_keys[name] = {key: described[key].get("units") for key in sorted(described)}
    num_events = dict(stop.get("num_events") or {})
    for name in streams:
        if name not in num_events:
            num_events[name] = _count_rows(run[name])
    start_time = start.get("time")
    stop_time = stop.get("time")
    duration = (
        stop_time - start_time
        if isinstance(start_time, (int, float)) and isinstance(stop_time, (int, float))
        else None
    )
    return {
        "uid": start.get("uid"),
        "scan_id": start.get("scan_id"),
        "plan_name": start.get("plan_name"),
        "start_time": start_time,
        "stop_time": stop_time,
        "duration": duration,
        "exit_status": stop.get("exit_status"),
        "reason": stop.get("reason") or None,
        "streams": streams,
        "num_events": num_events,
        "data_keys": data_keys,
    }


def _count_rows(stream: Any) -> int:
    base = getattr(stream, "base", None)
    if base is not None and "internal" in base:
        return len(base["internal"].read())
    return 0


def list_runs(catalog: Any, limit: int | None = 20) -> list[dict[str, Any]]:
    """Summaries (metadata only) of the most recent runs, newest first.

    Each is a dict with ``uid``, ``scan_id``, ``plan_name``, ``start_time``, ``exit_status``
    and ``num_events`` (the total over streams, from the stop document; ``None`` if none).
    """
    if limit is not None and limit <= 0:
        return []
    # tiled slices tree sequences backwards only with step -1 (newest first)
    runs = catalog.values()[-1 : -(limit + 1) : -1] if limit is not None else catalog.values()[::-1]
    rows: list[dict[str, Any]] = []
    for run in runs:
        start = run.metadata.get("start") or {}
        stop = run.metadata.get("stop") or {}
        counts = stop.get("num_events")
        total = sum(counts.values()) if isinstance(counts, dict) else None
        rows.append(
            {
                "uid": start.get("uid"),
                "scan_id": start.get("scan_id"),
                "plan_name": start.get("plan_name"),
                "start_time": start.get("time"),
                "exit_status": stop.get("exit_status"),
                "num_events": total,
            }
        )
    return rows

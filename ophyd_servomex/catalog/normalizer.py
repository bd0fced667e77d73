"""The per-run catalog writer: ``TiledWriter``'s own run writer, with a cheap path for events.

:func:`tiled_run_writer` makes the writer of one run (the router of
:class:`~ophyd_servomex.catalog.writer.JournaledWriter` has already picked the run, so no
second router is put in front of it): ``TiledWriter``'s per-run callback — its
``RunNormalizer`` (legacy documents upgraded to the current schema) feeding its run writer.

:class:`LeanRunNormalizer` is that ``RunNormalizer`` with one shortcut. For every event the
stock normalizer deep-copies the document and validates it against the JSON schema, about
half of what the catalog costs per event. An event whose data keys are all internal (no
external ``Resource``/``Datum`` reference to resolve), none of them a reserved name (``time``,
``seq_num``) and nothing to patch, needs none of that: it is passed on as a shallow copy
without its ``filled`` map — the document the stock normalizer would emit. Every other
document, and any event that needs more, takes the stock path. The documents are checked
where they are made (bluesky's RunEngine) and kept verbatim in the journal.
"""

from __future__ import annotations

from typing import Any

from bluesky_tiled_plugins.writing.tiled_writer import (
    RESERVED_DATA_KEYS,
    RunNormalizer,
    TiledWriter,
)
from event_model import DocumentNames

from .redact import redacting_logger

__all__ = ["LeanRunNormalizer", "tiled_run_writer"]

logger = redacting_logger(__name__)

_RESERVED = frozenset(RESERVED_DATA_KEYS)


class LeanRunNormalizer(RunNormalizer):  # type: ignore[misc]
    """``RunNormalizer`` that passes plain internal events on without a deep copy or a schema
    check (see the module doc); everything else is normalized as usual (an event page is
    unpacked by the stock ``event_page`` into :meth:`event` calls)."""

    def event(self, doc: dict[str, Any]) -> None:
        """Pass a plain internal event straight on; anything else the stock way."""
        data = doc["data"]
        if (
            "event" not in self.patches
            and not doc.get("filled")
            and self._int_keys.issuperset(data)
            and self._ext_keys.isdisjoint(data)
            and _RESERVED.isdisjoint(data)
        ):
            self.dispatcher.process(
                DocumentNames.event, {key: value for key, value in doc.items() if key != "filled"}
            )
            return
        super().event(doc)


def tiled_run_writer(
    client: Any,
    *,
    batch_size: int,
    normalizer: type[Any] | None = LeanRunNormalizer,
    **options: Any,
) -> Any:
    """The catalog writer of one run: ``TiledWriter``'s per-run callback for ``client``.

    ``normalizer`` (default :class:`LeanRunNormalizer`; ``RunNormalizer`` for the stock one,
    ``None`` for none: then legacy ``Resource``/``Datum`` documents are not converted) and
    ``options`` are ``TiledWriter``'s own. The callable returned takes one run's documents.
    """
    writer = TiledWriter(client, batch_size=batch_size, normalizer=normalizer, **options)
    factory = getattr(writer, "_factory", None)
    if factory is None:  # a TiledWriter without its per-run factory: it routes the one run
        return writer
    callbacks, _ = factory("start", {})
    return callbacks[0]

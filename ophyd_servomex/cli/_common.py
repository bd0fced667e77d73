"""Moved: the device commands' shared pieces now live in modules named for what they hold
(:mod:`._options`, :mod:`._run`, :mod:`._render`, :mod:`._stats`); this re-export goes once
every importer uses them."""

from __future__ import annotations

from ._options import (
    PORT_HELP,
    PROTOCOL_ALIASES,
    PROTOCOLS,
    add_connection_options,
    addresses,
    non_negative_float,
    open_analyzer,
    open_manager,
    positive_float,
    protocol_choices,
    protocol_type,
    serial_settings,
    several,
    single_address,
)
from ._render import flags_text, format_frame_table, frame_to_dict, value_text
from ._run import print_err, run_command, until_interrupted
from ._stats import Timing, timing

__all__ = [
    "PORT_HELP",
    "PROTOCOLS",
    "PROTOCOL_ALIASES",
    "Timing",
    "add_connection_options",
    "addresses",
    "flags_text",
    "format_frame_table",
    "frame_to_dict",
    "non_negative_float",
    "open_analyzer",
    "open_manager",
    "positive_float",
    "print_err",
    "protocol_choices",
    "protocol_type",
    "run_command",
    "serial_settings",
    "several",
    "single_address",
    "timing",
    "until_interrupted",
    "value_text",
]

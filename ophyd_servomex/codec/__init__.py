"""The pure, sans-I/O layer: device model, errors and wire codecs. No I/O happens here.

The register map (``codec.registers``) and Modbus ADU framing (``codec.modbus_frames``)
are imported from their modules; the names most users need are re-exported here.

The connection options and the shared argument checks (``ConnectionOptions``,
``parse_protocol``, ``check_address``, ``check_group``, ``check_positive``,
``check_non_negative``, ``check_count``; modules ``codec.options`` and ``codec.checks``) are
importable from here too but stay out of ``__all__``, so the top-level package keeps the
reference driver's page of names.
"""

from .charset import decode_display, encode_display
from .checks import check_address as check_address
from .checks import check_count as check_count
from .checks import check_group as check_group
from .checks import check_non_negative as check_non_negative
from .checks import check_positive as check_positive
from .continuous import ContinuousDecoder, build_frame, checksum, parse_frame
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .models import *  # noqa: F403
from .models import __all__ as _models_all
from .options import ConnectionOptions as ConnectionOptions
from .options import parse_protocol as parse_protocol

__all__ = [
    *_errors_all,
    *_models_all,
    "ContinuousDecoder",
    "build_frame",
    "checksum",
    "decode_display",
    "encode_display",
    "parse_frame",
]

"""The pure, sans-I/O layer: device model, errors and wire codecs. No I/O happens here.

The register map (``codec.registers``) and Modbus ADU framing (``codec.modbus_frames``)
are imported from their modules; the names most users need are re-exported here.
"""

from .charset import decode_display, encode_display
from .continuous import ContinuousDecoder, build_frame, checksum, parse_frame
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .models import *  # noqa: F403
from .models import __all__ as _models_all

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

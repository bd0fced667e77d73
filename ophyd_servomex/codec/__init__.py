"""The pure, sans-I/O layer: device model, errors and wire codecs. No I/O happens here."""

from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .models import *  # noqa: F403
from .models import __all__ as _models_all

__all__ = [*_errors_all, *_models_all]

"""Exceptions raised by genface.

Every error a user can cause derives from :class:`GenfaceError` and also from the closest
built-in exception, so ``except ValueError`` keeps working. Messages say what was wrong and
how to fix it.
"""

from __future__ import annotations


class GenfaceError(Exception):
    """Base class of every genface error."""


class InvalidArgumentError(GenfaceError, ValueError):
    """An argument has a value the model cannot take (sizes, frame counts, steps, options)."""


class InvalidImageError(GenfaceError, ValueError):
    """An image could not be read, or is unusable (corrupt, empty, too large, wrong type)."""


class InvalidMediaError(GenfaceError, ValueError):
    """An audio or video file could not be read, or is unusable."""


class NoFaceError(GenfaceError, ValueError):
    """No face was found where one was needed."""


class MultipleFacesError(GenfaceError, ValueError):
    """Several faces were found where exactly one was required."""


class FaceTooSmallError(GenfaceError, ValueError):
    """The chosen face is too small to carry identity."""


class InvalidIdentityFileError(GenfaceError, ValueError):
    """A file given as a saved FaceIdentity is not one (or is from an incompatible version)."""


class MissingWeightsError(GenfaceError, FileNotFoundError):
    """Model weights were not found; the message lists where they were looked for."""


class UnsafeWeightsError(GenfaceError, ValueError):
    """A weights file holds more than tensors (pickled code); genface refuses to run it."""


class InsufficientMemoryError(GenfaceError, MemoryError):
    """The request does not fit the device's memory; the message names the low-memory options."""


class OfflineError(GenfaceError, ConnectionError):
    """A download was needed but the network or the Hub cannot be reached."""


class BackendUnavailableError(GenfaceError, ImportError):
    """A face backend's package is not installed or cannot run here."""

"""Errors a user can act on.

The CLI prints ``PetSegError`` messages as one line and exits non-zero; the
dashboard shows them as plain text. Anything else is a bug and keeps its
traceback.
"""


class PetSegError(Exception):
    """A problem with the user's input or environment, with a message saying what to do."""


class UnknownImage(PetSegError):
    """An image id the dataset index does not know (or that is not a valid id at all)."""


class ImageUnreadable(PetSegError):
    """An image or mask file exists but cannot be decoded."""


class CheckpointError(PetSegError):
    """A checkpoint is missing, corrupt, unsafe or of another architecture."""

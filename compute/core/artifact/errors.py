"""The error every artifact module raises."""

from __future__ import annotations

from compute.core.errors import UserError


class ArtifactError(UserError):
    """An artifact that cannot be read or written; the message is one line for the user."""

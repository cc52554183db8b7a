"""The errors golden/ raises for bad user input, torch-free so that the CLI can name them
without importing torch. Each message is one sentence; the CLI exits with code 2."""
from __future__ import annotations

__all__ = ["ImageError", "CheckpointImportError"]


class ImageError(ValueError):
    """A weight image that is missing, truncated, corrupt or inconsistent (golden.image)."""


class CheckpointImportError(ValueError):
    """A checkpoint that cannot be imported without guessing (golden.lm_import)."""

"""Errors that name a problem with what the user gave (a file, a folder, a weight), not a bug.

The CLI prints any of them as one ``error:`` line and exits 2. This module imports nothing, so the CLI can catch
them without loading torch.
"""
from __future__ import annotations


class UserInputError(Exception):
    """Something the user provided is unusable; the message says what and what to do."""


class UnsafeWeightsError(UserInputError, ValueError):
    """A weights file that would need unpickling arbitrary objects (``torch.load(weights_only=False)``)."""


class FitSetError(UserInputError, ValueError):
    """The samples a task fits the generator on lack what the method's fit needs (masks, a customization set):
    a task/method pairing or a setting that cannot train. The message names the sample and the way out."""

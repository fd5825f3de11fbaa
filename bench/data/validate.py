"""Decode every file of a split once, before a run spends time on training.

`verify_samples` is what the runner calls on each split: a corrupt image stops the
run here, with the file named, instead of deep inside a data-loader worker.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from bench.data.base import DataError
from bench.interface import Sample

logger = logging.getLogger(__name__)


def verify_samples(samples: Sequence[Sample], max_listed: int = 3) -> None:
    """Decode each image and mask of ``samples`` once.

    For samples read from files (`bench.data.real.FileSamples`) only the files are
    decoded (no resizing); other sequences (procedural worlds) are materialised.

    Args:
        samples: a split as returned by ``DatasetSource.load``.
        max_listed: how many failing files the message names besides the count.

    Raises:
        DataError: one line ``<file>: <what is wrong>``, naming the first unreadable file,
            then (when several fail) the total count and the next few files.
    """
    verify = getattr(samples, "verify", None)
    failures: list[str] = []
    for i in range(len(samples)):
        try:
            if verify is None:
                samples[i]
            else:
                verify(i)
        except DataError as exc:
            failures.append(str(exc))
        except Exception as exc:  # a loader bug or an unexpected decoder error: still name the sample
            ident = getattr(samples, "ids", [str(i)] * (i + 1))[i]
            failures.append(f"sample {ident}: {type(exc).__name__}: {exc}")
    if failures:
        if len(failures) == 1:
            raise DataError(failures[0])
        others = "; ".join(failures[1:max_listed])
        rest = len(failures) - max_listed
        tail = f"; and {rest} more" if rest > 0 else ""
        raise DataError(f"{failures[0]} [{len(failures)} of {len(samples)} samples unreadable; also: {others}{tail}]")
    logger.info("verified %d samples", len(samples))

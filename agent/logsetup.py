"""Logging to stderr; no timestamps under journald, which adds its own."""

from __future__ import annotations

import logging
import os


def _format(threads: bool) -> str:
    fmt = "%(levelname)s %(name)s" + (" [%(threadName)s]" if threads else "") + ": %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    return fmt


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), format=_format(threads=False), force=True)
    # Third-party chatter stays at warnings.
    for noisy in ("paho", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def name_threads_in_log() -> None:
    """Add the thread's name to every line: with several rooms the capture threads carry the
    room's id (``audio-kitchen``, ``camera-frames-hall``), and so say which room a line is
    about."""
    formatter = logging.Formatter(_format(threads=True))
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)

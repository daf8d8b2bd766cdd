"""Logging to stderr; no timestamps under journald, which adds its own."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str = "info") -> None:
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, force=True)
    # Third-party chatter stays at warnings.
    for noisy in ("paho", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

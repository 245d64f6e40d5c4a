"""A console log handler that lets a live progress bar draw around log lines."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO


class LiveStdoutHandler(logging.StreamHandler):
    """Writes each record to whatever ``sys.stdout`` is at that moment.

    A plain handler keeps the stream it was given when logging was set up; a
    live progress bar (Rich) swaps ``sys.stdout`` for a proxy that prints above
    the bar, so a log line written to the old stream lands inside the bar.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always sys.stdout, looked up at write time

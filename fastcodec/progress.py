"""Terminal output of the command line: a progress bar and the summary table (stdlib only).

:class:`Progress` draws one self-overwriting line on a stream (stderr by default) and only when
that stream is a terminal, so logs, pipes and ``--json`` output never contain it.
:func:`format_table` lays rows out in right-aligned columns for the summary after a run.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, Sequence, TextIO


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """A thread-safe progress bar: ``done/total`` items, megapixels per second and time left.

    ``Progress(total, label="compress")``; call :meth:`update` once per finished item (from any
    thread) and :meth:`close` at the end (or use it as a context manager). Draws at most every
    ``interval`` seconds, and never unless ``stream`` is a TTY (``enabled=True`` forces drawing,
    ``False`` disables it).
    """

    def __init__(self, total: int, *, label: str = "", stream: Optional[TextIO] = None,
                 enabled: Optional[bool] = None, width: int = 24, interval: float = 0.1):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total = int(total)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_tty(self.stream) if enabled is None else bool(enabled)
        self.width = int(width)
        self.interval = float(interval)
        self.done = 0
        self.megapixels = 0.0
        self._start = time.perf_counter()
        self._last_draw = float("-inf")
        self._drawn = False
        self._lock = threading.Lock()

    def reset(self, total: int) -> None:
        """Starts over (count and clock) with ``total`` items."""
        with self._lock:
            self.total, self.done, self.megapixels = int(total), 0, 0.0
            self._start = time.perf_counter()

    def update(self, n: int = 1, *, megapixels: float = 0.0) -> None:
        """Counts ``n`` more finished items holding ``megapixels`` MP in total."""
        with self._lock:
            self.done += n
            self.megapixels += megapixels
            now = time.perf_counter()
            if self.enabled and (now - self._last_draw >= self.interval or self.done >= self.total):
                self._last_draw = now
                self._draw(now)

    def line(self, now: Optional[float] = None) -> str:
        """The bar as text, e.g. ``compress [#########.......]  12/40  3.1 MP/s  ETA 0:09``."""
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        text = f"{self.label} [{bar}] {self.done}/{self.total}"
        if self.megapixels:
            text += f"  {self.megapixels / elapsed:.2f} MP/s"
        if 0 < self.done < self.total:
            left = elapsed * (self.total - self.done) / self.done
            text += f"  ETA {_clock(left)}"
        return text.strip()

    def message(self, text: str) -> None:
        """Prints ``text`` as its own line on the bar's stream (above the bar, which is redrawn)."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
            self.stream.write(text + "\n")
            if self._drawn:
                self.stream.write(self.line())
            self.stream.flush()

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[K" + self.line(now))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Ends the bar's line (if one was drawn), so that later output starts on a new line."""
        with self._lock:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """``headers`` and ``rows`` (cells of any type; ``None`` prints empty) as aligned text:
    the first column left-aligned, the others right-aligned, two spaces between columns."""
    cells = [[str(h) for h in headers]]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells, the table has {len(headers)} columns")
        cells.append(["" if c is None else str(c) for c in row])
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                stream: Optional[TextIO] = None) -> None:
    """Prints :func:`format_table` to ``stream`` (stdout by default)."""
    print(format_table(headers, rows), file=sys.stdout if stream is None else stream)

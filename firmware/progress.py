"""Progress for everything a user waits on: one small helper, live on a terminal, quiet otherwise.

The CLI uses it for the Verilator build (with its cache path), the yosys estimate, simulation
(images done, elapsed, ETA) and the Amaranth simulator inside an image (cycles against the cycle
model's estimate). It writes to standard error, so standard output keeps only results.

* On a terminal: a status line rewritten in place (``\\r``), throttled to a few updates per
  second, and one closing line per task (``Verilator build: 27.9 s``).
* Not on a terminal (pipes, CI logs, tests): nothing, unless ``ILMPQ_PROGRESS=1``; then each
  update is a plain line, throttled to one every few seconds so logs stay readable.
  ``ILMPQ_PROGRESS=0`` silences it on a terminal too.

(A dependency such as ``rich`` or ``tqdm`` would give the same on a terminal; this module is the
hundred lines the CLI needs, with the terminal/quiet rule in one place.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

__all__ = ["Progress", "Task", "format_seconds"]


def format_seconds(s: float) -> str:
    """``4.2 s``, ``1 min 05 s``, ``1 h 02 min``."""
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class Progress:
    """The progress display of one command.

    Parameters
    ----------
    stream : file, optional
        Where to write (default ``sys.stderr``).
    live : bool, optional
        Force the terminal behaviour on or off; default: ``ILMPQ_PROGRESS`` if set, else
        whether ``stream`` is a terminal.
    """

    def __init__(self, stream=None, *, live: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        env = os.environ.get("ILMPQ_PROGRESS")
        #: rewrite one status line in place (a terminal) or write plain lines
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if live is None:
            live = {"1": True, "0": False}.get(env, self.tty)
        self.enabled = bool(live)
        self._lock = threading.Lock()
        self._width = 0

    # -- output ----------------------------------------------------------------------------------

    def _write(self, text: str, *, final: bool) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self.tty:
                pad = max(0, self._width - len(text))
                self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
                self._width = 0 if final else len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        """One line (e.g. what is about to take long, and why)."""
        self._write(message, final=True)

    # -- tasks -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def task(self, label: str, total: float | None = None, *, unit: str = "",
             ticker: bool = False):
        """A task with ``total`` steps (``None``: unknown); yields a :class:`Task`.

        ``ticker``: also refresh the elapsed time every second from a background thread, for
        work that reports no steps (a compiler run, synthesis).
        """
        t = Task(self, label, total, unit)
        stop = threading.Event()
        thread = None
        if ticker and self.enabled:
            def tick():
                while not stop.wait(1.0):
                    t._show(force=True)
            thread = threading.Thread(target=tick, daemon=True)
            thread.start()
        ok = False
        try:
            t._show(force=True)
            yield t
            ok = True
        finally:
            stop.set()
            if thread is not None:
                thread.join()
            t._close(ok)


class Task:
    """One task of a :class:`Progress`; :meth:`update` it as steps complete."""

    def __init__(self, progress: Progress, label: str, total, unit: str):
        self.progress, self.label, self.total, self.unit = progress, label, total, unit
        self.done = 0
        #: fraction of the next step already done (for the ETA; not shown as a count)
        self.partial = 0.0
        self.detail = ""
        self.t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def eta(self) -> float | None:
        """Seconds left at the rate so far (``None`` before the first step or without a
        total)."""
        done = self.done + self.partial
        if not self.total or done <= 0:
            return None
        return self.elapsed * (self.total - done) / done

    def update(self, done: float | None = None, *, detail: str | None = None,
               partial: float | None = None) -> None:
        """Steps done so far (absolute), an optional detail (e.g. progress inside a step) and
        the fraction ``partial`` of the next step done (sharpens the ETA)."""
        with self._lock:
            if done is not None:
                self.done = done
                self.partial = 0.0
            if partial is not None:
                self.partial = min(max(partial, 0.0), 0.99)
            if detail is not None:
                self.detail = detail
        self._show()

    def line(self) -> str:
        with self._lock:
            parts = [f"{self.label}:"]
            if self.total is not None:
                parts.append(f"{self.done:g}/{self.total:g}{' ' + self.unit if self.unit else ''}")
            parts.append(format_seconds(self.elapsed))
            eta = self.eta()
            if eta is not None and self.done < self.total:
                parts.append(f"ETA {format_seconds(eta)}")
            if self.detail:
                parts.append(self.detail)
        return parts[0] + " " + ", ".join(parts[1:])

    def _show(self, force: bool = False) -> None:
        p = self.progress
        if not p.enabled:
            return
        now = time.monotonic()
        gap = 0.2 if p.tty else 5.0
        if not force and now - self._last < gap:
            return
        if force and not p.tty and self._last and now - self._last < gap:
            return
        self._last = now
        p._write(self.line(), final=False if p.tty else True)

    def _close(self, ok: bool) -> None:
        p = self.progress
        if not p.enabled:
            return
        with self._lock:
            self.detail = ""
        what = f"{self.done:g}/{self.total:g}{' ' + self.unit if self.unit else ''}, " \
            if self.total is not None else ""
        p._write(f"{self.label}: {what}{format_seconds(self.elapsed)}"
                 f"{'' if ok else ' (stopped)'}", final=True)

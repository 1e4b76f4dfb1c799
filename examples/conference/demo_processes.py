"""Child processes for run.py: start, wait until serving, stream output, stop.

Each child runs in its own session (process group), so a Ctrl-C in the terminal
reaches run.py alone, which then stops the children in order (callers first,
then services, then the control plane) and waits for each: no orphans.
stdout is read line by line on a thread; stderr goes to a log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

_EOF = None


class ProcessFailed(RuntimeError):
    """A child exited or stayed silent when it should have been serving."""


class ManagedProcess:
    """One child process whose stdout lines arrive on a queue."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: TextIO = self.log_path.open("w", encoding="utf-8")
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()
        self._drainer: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    def _read(self) -> None:
        assert self._popen.stdout is not None
        for line in self._popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(_EOF)

    def lines(self, timeout: float | None = None) -> Iterator[str]:
        """stdout lines until the process closes stdout (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                return
            if line is _EOF:
                return
            yield line

    def wait_serving(self, timeout: float) -> dict[str, Any]:
        """The first JSON line with ``"event": "serving"``; other lines go to the log."""
        for line in self.lines(timeout):
            announcement = _parse_serving(line)
            if announcement is not None:
                return announcement
            self._log.write(f"[stdout] {line}\n")
            self._log.flush()
        code = self._popen.poll()
        state = f"exited with code {code}" if code is not None else f"silent for {timeout:.0f} s"
        raise ProcessFailed(f"{self.name} {state} before serving; log: {self.log_path}")

    def drain_to_log(self) -> None:
        """Keep reading stdout into the log so the child never blocks on a full pipe."""

        def pump() -> None:
            for line in self.lines():
                self._log.write(f"[stdout] {line}\n")
                self._log.flush()

        self._drainer = threading.Thread(target=pump, name=f"{self.name}-drain", daemon=True)
        self._drainer.start()

    def wait(self, timeout: float | None = None) -> int:
        return self._popen.wait(timeout)

    def poll(self) -> int | None:
        return self._popen.poll()

    def stop(self, timeout: float = 5.0, first_signal: int = signal.SIGTERM) -> int:
        """Signal the child's process group, then kill it if it lingers."""
        if self._popen.poll() is None:
            self._signal_group(first_signal)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
        self._reader.join(timeout=1.0)
        if self._drainer is not None:
            self._drainer.join(timeout=1.0)
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        self._log.close()
        return self._popen.returncode

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)  # its own group: started with a new session

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _parse_serving(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        parsed = json.loads(line)
    except json.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and parsed.get("event") == "serving":
        return parsed
    return None

"""``meshctl`` through its own entry point in this process, for tests that only need what a
command prints and returns: the same code, without an interpreter start and meshctl's
imports per call (long-running commands, like the agent without ``--once``, stay real
subprocesses)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading

from controlplane import meshctl

_ONE_AT_A_TIME = threading.Lock()  # stdout and stderr are redirected process-wide


def run_meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``meshctl ARGS``: its exit code, stdout and stderr, as a subprocess run would give."""
    out, err = io.StringIO(), io.StringIO()
    with _ONE_AT_A_TIME, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = meshctl.main(list(args))
    return subprocess.CompletedProcess(["meshctl", *args], code, out.getvalue(), err.getvalue())

"""`python -m flows.parent_death PID -- COMMAND...`: run COMMAND, ended (SIGTERM) when process PID ends.

For servers a command starts for itself alone (flows/localserver.py `start_temporary`): Linux sends
the signal when the parent dies, even by SIGKILL, so nothing is left running after a killed command.
The signal is armed before the exec and kept across it; a parent already gone by then ends it at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        sys.exit("usage: python -m flows.parent_death PID -- COMMAND...")
    parent = int(argv[0])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(0)
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])

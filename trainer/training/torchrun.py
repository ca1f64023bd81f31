"""`python -m trainer.training.torchrun ARGS`: torchrun with ARGS, dying with the process that started
it. The kernel sends it SIGTERM when its parent (the worker) dies, and torchrun then stops its ranks,
so a killed worker never leaves processes training behind. The signal survives the exec below; it is
set here rather than between fork and exec because the worker has threads running."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above: nobody is left to report to
        sys.exit(1)
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *sys.argv[1:]])


if __name__ == "__main__":
    main()

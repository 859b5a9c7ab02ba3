"""A writer that holds a run directory and then waits, for the lock and manifest tests.

    python tests/fakes/lock_holder.py RUN_DIR [SECONDS]

It takes the run's lock the way every writing command does, opens a manifest session
under it, prints ``ready <pid>`` and sleeps (60 s by default) until it is killed, which is
the point: a test kills it with SIGKILL to leave a lock and a session a dead process held.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from harness.core.lock import RunLock
from harness.core.manifest import Manifest
from harness.core.rundir import RunDir


def main() -> None:
    run = RunDir(Path(sys.argv[1]))
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    lock = RunLock(run, "run").acquire()
    Manifest(run.manifest).start("run", session_id=lock.token)
    print(f"ready {os.getpid()}", flush=True)
    time.sleep(seconds)
    lock.release()


if __name__ == "__main__":
    main()

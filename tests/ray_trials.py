"""The task function of the Ray executor test, importable by Ray's workers: a JointNAS trial whose first attempt
at the trial named in ``FBNAS_TEST_KILL`` announces its worker's pid and waits (mid-trial: its folder is started,
its result not written) so the test can kill that worker."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def killable_trial(task: Any) -> dict[str, Any]:
    from fbnas.runs import RunFolder
    from fbnas.search.jointnas.trials import run_trial

    marker = Path(task.trial_dir).parent / "kill-me.pid"
    attempts = Path(task.trial_dir).parent / f"{task.trial_id}.attempts"
    attempts.parent.mkdir(parents=True, exist_ok=True)
    with attempts.open("a") as f:
        f.write(f"{os.getpid()}\n")
    if task.trial_id == os.environ.get("FBNAS_TEST_KILL") and not marker.exists():
        folder = RunFolder(task.trial_dir, "trial")
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.start({"trial": task.trial_id}, seed=0)  # a trial begun, as a worker dying mid-training leaves it
        marker.write_text(str(os.getpid()))
        time.sleep(60)  # the test kills this process now
    return run_trial(task)

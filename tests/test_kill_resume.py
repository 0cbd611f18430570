"""A run SIGKILLed mid-training and resumed with ``jaxpo train --resume`` equals one run.

Proves, through the real command line and a real ``kill -9`` (no chance to clean up, possibly
in the middle of an orbax save), that the checkpoint left behind is loadable, that
``--resume`` continues from it, and that the final ``metrics.csv`` holds every (seed, update)
pair exactly once and is identical to that of an uninterrupted run: the updates before the
kill come from the checkpoint, none is lost or repeated, and the resumed updates are
bit-identical to those of the uninterrupted run.
"""

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxpo import checkpoint

UPDATES = 16  # CartPole PPO preset: 512 env steps per update
SEEDS = 2
TRAIN = [sys.executable, "-m", "jaxpo", "train", "--no-progress"]
FRESH = [f"--total-timesteps={UPDATES * 512}", f"--seeds={SEEDS}", "--checkpoint-every=1"]
TIMEOUT = 300  # per command; one run takes about 20 s on 2 CPU cores


def rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def updates_saved(run):
    """Updates in the checkpoint in ``run`` (0 before the first save).

    Cheap, for polling: the ``update`` field of ``run.json``, which each save replaces
    atomically once its arrays are in place. :func:`jaxpo.checkpoint.load` confirms it after
    the kill.
    """
    try:
        return int(json.loads((run / checkpoint.RUN_FILE).read_text())["update"])
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkilled_run_resumes_to_the_uninterrupted_metrics(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run([*TRAIN, *FRESH, f"--out={ref}"], check=True, timeout=TIMEOUT)

    # The update to kill at is random (anywhere but the first and last few updates) but seeded,
    # so a rerun kills at the same point.
    kill_at = int(np.random.default_rng(20240611).integers(2, UPDATES - 2))  # in [2, U-3]
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen([*TRAIN, *FRESH, f"--out={run}"], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + TIMEOUT
            while updates_saved(run) < kill_at:
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "the run never reached the kill point"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()  # no-op once killed; a failed poll must not leave it running
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint.load(run).update  # what the killed run left
    assert kill_at <= killed_at < UPDATES
    assert not (run / "metrics.csv").exists()  # written only at the end: the kill came first

    done = subprocess.run(
        [*TRAIN, f"--resume={run}"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert f"resuming at update {killed_at}" in done.stdout

    got = rows(run)
    pairs = [(int(r["seed"]), int(r["update"])) for r in got]
    assert sorted(pairs) == [(s, u) for s in range(SEEDS) for u in range(1, UPDATES + 1)]
    # Every column compared exactly (as text): none holds a wall time, and a resumed run
    # computes the same floats as one run on the same machine.
    assert got == rows(ref)

"""Output a person reads: progress on stderr, one unwrapped line per report, in the headers'
units (env steps per agent; throughput over all agents, labelled), results alone on stdout.
"""

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaxpo import progress
from jaxpo.progress import ProgressDisplay

#: a report line: label, update, per-agent steps, throughput (not on the first), return.
LINE = re.compile(
    r"(?P<label>.+): update (?P<update>\d+)/(?P<updates>\d+)"
    r" \| env steps (?P<steps>[\d,]+)/(?P<total>[\d,]+) per agent"
    r"(?: \| (?P<rate>[\d,]+) env steps/s \(all (?P<rate_agents>\d+) agents\))?"
    r" \| return (?P<mean>-?[\d.]+) ± (?P<std>[\d.]+) \((?P<agents>\d+) agents\)"
)


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture
def not_a_terminal(monkeypatch):
    """No environment variable that makes rich treat a file as a terminal."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def report(display: ProgressDisplay, updates, agents: int, spu: int) -> None:
    """Reports ``updates`` as the compiled run's hook does (env steps per agent)."""
    for u in updates:
        display(u, u * spu, np.arange(agents, dtype=np.float64) + u)


# --------------------------------------------------------------------------- unit


@pytest.mark.parametrize("sink", ["stringio", "file"])
def test_one_unwrapped_line_per_report_in_per_agent_steps(sink, tmp_path, not_a_terminal):
    label = "x" * 200  # with the rest, each line is over 270 characters: far past 80 columns
    agents, spu, updates = 8, 512, (1, 2, 5)
    stream = io.StringIO() if sink == "stringio" else (tmp_path / "log").open("w")
    with ProgressDisplay(10, spu, label=label, stream=stream) as display:
        report(display, updates, agents, spu)
    if sink == "file":
        stream.close()
        text = (tmp_path / "log").read_text()
    else:
        text = stream.getvalue()

    lines = text.splitlines()
    assert len(lines) == len(updates) == display.calls  # exactly one line per report
    assert all(len(line) > 270 for line in lines)
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    for u, m in zip(updates, parsed, strict=True):
        assert m["label"] == label and (number(m["update"]), number(m["updates"])) == (u, 10)
        assert number(m["steps"]) == u * spu  # one agent's steps, not times the 8 agents
        assert number(m["total"]) == 10 * spu
        returns = np.arange(agents) + u
        assert float(m["mean"]) == pytest.approx(returns.mean(), abs=0.05)
        assert float(m["std"]) == pytest.approx(returns.std(), abs=0.05)
        assert number(m["agents"]) == agents


def test_throughput_is_total_env_steps_over_all_agents(monkeypatch, not_a_terminal):
    clock = iter([100.0, 101.0, 102.0])  # the first report at 100 s (after compiling)
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    stream = io.StringIO()
    agents, spu = 8, 512
    with ProgressDisplay(10, spu, label="ppo", stream=stream) as display:
        report(display, (1, 2, 5), agents, spu)
    first, second, third = (LINE.fullmatch(line) for line in stream.getvalue().splitlines())
    assert first["rate"] is None  # nothing to time yet
    # 1 update x 512 steps x 8 agents in 1 s; then 4 updates in 2 s since the first report
    assert number(second["rate"]) == 1 * spu * agents
    assert number(third["rate"]) == 4 * spu * agents // 2
    assert number(second["rate_agents"]) == number(third["rate_agents"]) == agents


def test_log_lines_go_to_stderr_by_default(capsys, not_a_terminal):
    with ProgressDisplay(4, 64, label="ppo") as display:
        report(display, (2, 4), 3, 64)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert [line.split(" |")[0] for line in captured.err.splitlines()] == [
        "ppo: update 2/4",
        "ppo: update 4/4",
    ]


def test_the_bar_on_a_terminal_goes_to_stderr_too(capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the stream as a terminal
    monkeypatch.setenv("COLUMNS", "250")  # wide enough for the whole bar
    with ProgressDisplay(4, 64, label="ppo") as display:
        assert display.console.is_terminal
        report(display, (2, 4), 3, 64)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "4/4 updates" in captured.err and "env steps 256/256 per agent" in captured.err


# --------------------------------------------------------------------------- end to end


def run_piped(args: list[str], tmp_path: Path) -> tuple[list[str], list[str]]:
    """Runs ``python -m jaxpo *args`` with stdout and stderr to separate files, in a narrow
    non-terminal environment; returns their lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = "40"  # a narrow console: lines must still not wrap
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as o, err.open("w") as e:
        code = subprocess.call(
            [sys.executable, "-m", "jaxpo", *args], stdout=o, stderr=e, env=env, cwd=tmp_path
        )
    assert code == 0, err.read_text()
    return out.read_text().splitlines(), err.read_text().splitlines()


def check_progress(stdout: list[str], stderr: list[str], updates: int, spu: int, agents: int):
    """No progress on stdout; on stderr one full line per update, steps per agent."""
    assert not [line for line in stdout if "update " in line or "per agent" in line]
    header = stdout[0]
    assert f"{updates} updates x {spu} env steps" in header
    lines = [line for line in stderr if line.startswith("ppo: update")]
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [number(m["update"]) for m in parsed] == list(range(1, updates + 1))
    assert [number(m["steps"]) for m in parsed] == [u * spu for u in range(1, updates + 1)]
    assert {number(m["total"]) for m in parsed} == {updates * spu}  # the header's N x B
    assert {number(m["agents"]) for m in parsed} == {agents}
    assert all(m["rate"] is not None and number(m["rate_agents"]) == agents for m in parsed[1:])


# The CartPole PPO preset: 4 envs x 128 steps = 512 env steps per agent per update.
BUDGET = ["--total-timesteps", "4096", "--progress-interval", "1"]  # 8 updates


def test_train_piped_results_on_stdout_progress_on_stderr(tmp_path):
    stdout, stderr = run_piped(["train", *BUDGET, "--seeds", "2", "--out", "run"], tmp_path)
    assert stdout[0].startswith("jaxpo train: ppo on gymnax:CartPole-v1, 2 seed(s)")
    assert any(line.strip().startswith("mean") for line in stdout)
    assert stdout[-1].startswith("wrote ")
    check_progress(stdout, stderr, updates=8, spu=512, agents=2)


def test_sweep_piped_results_on_stdout_progress_on_stderr(tmp_path):
    grid = ["--grid", "learning_rate=1e-3,3e-4", "--seeds", "1"]
    stdout, stderr = run_piped(["sweep", *grid, *BUDGET, "--out", "sweep"], tmp_path)
    assert "2 member(s) x 1 seed(s) = 2 agents" in stdout[0]
    assert any("top 2 of 2 members" in line for line in stdout)
    assert stdout[-1].startswith("wrote ")
    check_progress(stdout, stderr, updates=8, spu=512, agents=2)

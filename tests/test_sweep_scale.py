"""Sweeps at scale: chunks, sharding over devices, several processes, compile-once, NaN
isolation, explicit member lists and the progress merge.

Sharding and multi-process runs need JAX started with other devices, so they run in
subprocesses (4 host devices; two ``jax.distributed`` processes), each with a timeout so a
hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from helpers import finish, tiny_config
from sweeps import count_traces

from jaxpo import default_hparams, sweep

CONFIG = tiny_config(num_steps=8, updates=4, update_epochs=1, hidden_sizes=(8, 8))
LRS = [1e-3, 3e-4, 1e-4]
SEEDS = 2
TIMEOUT = 600


def assert_metrics_close(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=tol, atol=tol, err_msg=name)


@pytest.fixture(scope="module")
def hp():
    return default_hparams(CONFIG)


@pytest.fixture(scope="module")
def chunked(hp):
    """The 3 × 2 sweep whole, in chunks of 2 (3 calls) and of 4 (2 calls, the last padded),
    then a second chunked sweep with other values, counting traces of ``train``."""
    grid = sweep.grid(hp, learning_rate=LRS)
    other = sweep.grid(hp.set(clip_eps=0.1, ent_coef=0.02), learning_rate=[3e-3, 1e-5, 2e-4])
    sweep.make_sweep_fn.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        traces = count_traces(mp)
        whole = sweep.run(CONFIG, grid, seeds=SEEDS)
        by_two = sweep.run(CONFIG, grid, seeds=SEEDS, chunk_size=2)
        traces_before = traces["n"]
        again = sweep.run(CONFIG, other, seeds=SEEDS, chunk_size=2)
        traces_again = traces["n"] - traces_before
        by_four = sweep.run(CONFIG, grid, seeds=SEEDS, chunk_size=4, keep_state=False)
    return {
        "whole": whole,
        "by_two": by_two,
        "by_four": by_four,
        "again": again,
        "traces_again": traces_again,
    }


def test_chunked_equals_unchunked(chunked):
    whole = chunked["whole"]
    for name in ("by_two", "by_four"):
        assert_metrics_close(chunked[name].metrics, whole.metrics)
        for value in chunked[name].metrics.values():
            assert value.shape == (len(LRS), SEEDS, CONFIG.num_updates)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        chunked["by_two"].state.params,
        whole.state.params,
    )
    assert chunked["by_four"].state is None


def test_second_chunked_sweep_does_not_recompile(chunked):
    assert chunked["traces_again"] == 0
    assert not np.allclose(
        chunked["again"].metrics["policy_loss"], chunked["by_two"].metrics["policy_loss"]
    )


def test_session_has_one_device_per_core():
    """``tests/conftest.py`` split the CPU as ``jaxpo`` commands do, so sweeps here shard."""
    if jax.default_backend() == "cpu" and "XLA_FLAGS" not in os.environ:
        assert jax.device_count() == min(os.cpu_count(), 2)


def test_plan_lays_out_agents_and_refuses_bad_chunks(hp):
    grid = sweep.grid(hp, learning_rate=LRS)
    layout = sweep.plan(CONFIG, grid, SEEDS, chunk_size=4, devices=jax.devices()[:1] * 2)
    assert layout.num_agents == 6 and layout.num_devices == 2
    assert (layout.chunk_size, layout.num_chunks) == (4, 2)
    assert layout.total_updates == 2 * CONFIG.num_updates
    whole = sweep.plan(CONFIG, grid, SEEDS, devices=jax.devices()[:1] * 4)
    assert (whole.chunk_size, whole.num_chunks) == (8, 1)  # 6 agents padded to 4 devices
    rounded = sweep.plan(CONFIG, grid, SEEDS, chunk_size=3, devices=jax.devices()[:1] * 2)
    assert (rounded.chunk_size, rounded.num_chunks) == (4, 2)  # 3 rounded up to 2 devices
    few = sweep.plan(CONFIG, sweep.grid(hp, learning_rate=[1e-3]), 1, devices=jax.devices() * 4)
    assert (few.num_devices, few.chunk_size) == (1, 1)  # 1 agent: 1 device, no padding
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            sweep.plan(CONFIG, grid, SEEDS, chunk_size=bad)
    with pytest.raises(ValueError, match="non-negative integers"):
        sweep.plan(CONFIG, grid, [0, -1])


def test_agents_are_members_times_seeds(hp):
    grid = sweep.grid(hp, learning_rate=LRS)
    key_data, per_agent = sweep.agent_inputs(grid, np.array([5, 9]))
    np.testing.assert_allclose(per_agent.learning_rate, np.repeat(LRS, 2), rtol=1e-7)
    for agent, seed in enumerate([5, 9] * 3):
        np.testing.assert_array_equal(key_data[agent], jax.random.key_data(jax.random.key(seed)))


def test_nan_in_one_members_rewards_leaves_the_others_bit_identical(hp):
    """``reward_scale = NaN`` for member 1 makes its advantages, losses and parameters NaN;
    members 0 and 2 must equal a clean run bit for bit."""
    grid = sweep.grid(hp, learning_rate=LRS)
    poisoned = grid.replace(reward_scale=grid.reward_scale.at[1].set(np.nan))
    fn, _ = sweep.make_sweep_fn(CONFIG, None, sweep.make_mesh())
    seeds = np.arange(SEEDS)
    clean = sweep.to_host(fn(*sweep.agent_inputs(grid, seeds), np.int32(0)))
    dirty = sweep.to_host(fn(*sweep.agent_inputs(poisoned, seeds), np.int32(0)))
    bad = slice(SEEDS, 2 * SEEDS)  # member 1's agents
    assert np.isnan(dirty.metrics["policy_loss"][bad]).all()
    keep = np.r_[0:SEEDS, 2 * SEEDS : 3 * SEEDS]
    for name, value in clean.metrics.items():
        np.testing.assert_array_equal(dirty.metrics[name][keep], value[keep], err_msg=name)
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(a[keep], b[keep]),
        dirty.state.params,
        clean.state.params,
    )


def test_points_is_an_explicit_member_list(hp):
    batch = sweep.points(hp, [{"learning_rate": 1e-3}, {"learning_rate": 3e-4, "clip_eps": 0.1}])
    cols = sweep.columns(batch)
    np.testing.assert_allclose(cols["learning_rate"], [1e-3, 3e-4], rtol=1e-7)
    np.testing.assert_allclose(cols["clip_eps"], [float(hp.clip_eps), 0.1], rtol=1e-7)
    np.testing.assert_allclose(cols["gamma"], [float(hp.gamma)] * 2, rtol=1e-7)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "at least one member"),
        ([{"bogus": 1.0}], "unknown hparam 'bogus'"),
        ([{"num_envs": 8}], "static config field"),
        ([{"learning_rate": -1.0}], "learning_rate"),
    ],
)
def test_bad_points_are_refused(hp, members, message):
    with pytest.raises(ValueError, match=message):
        sweep.points(hp, members)


def test_merged_hook_reports_once_per_update_across_shards_and_chunks():
    calls = []
    merged = sweep.MergedHook(lambda *c: calls.append(c), shards=2)
    merged.reset(0, 4)
    for chunk in range(2):
        for update in (2, 4):
            for shard in range(2):
                merged(update, update * 10, np.full((3,), 10.0 * chunk + shard))
    assert [(u, s) for u, s, _ in calls] == [(2, 20), (4, 40), (6, 60), (8, 80)]
    assert all(r.shape == (6,) for _, _, r in calls)
    np.testing.assert_array_equal(np.sort(calls[-1][2]), [10] * 3 + [11] * 3)
    merged.reset(0, 4)
    merged(2, 20, np.zeros(3))
    merged(2, 20, np.zeros(3))
    assert calls[-1][0] == 2
    # A segment of 2 updates from update 6 (a resumed run), in 2 chunks: 7, 8, then 9, 10.
    merged.reset(6, 2)
    for update in (7, 8) * 2:  # chunk 0, then chunk 1
        merged(update, update * 10, np.zeros(3))  # shard 0
        merged(update, update * 10, np.zeros(3))  # shard 1
    assert [u for u, _, _ in calls[-4:]] == [7, 8, 9, 10]
    assert [s for _, s, _ in calls[-4:]] == [70, 80, 90, 100]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python(args: list[str], env_extra: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )


SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from jaxpo import Config, default_hparams, sweep

    fields = json.loads(sys.argv[1])
    config = Config(**fields, hidden_sizes=(8, 8))
    grid = sweep.grid(default_hparams(config), learning_rate=[1e-3, 3e-4, 1e-4, 3e-3])
    calls = []
    devices = jax.devices()
    sharded = sweep.run(
        config, grid, seeds=2, progress=lambda *c: calls.append(c), progress_interval=2
    )
    chunked = sweep.run(config, grid, seeds=2, chunk_size=4)
    alone = sweep.run(config, grid, seeds=2, devices=devices[:1])
    fn, _ = sweep.make_sweep_fn(config, None, sweep.make_mesh())
    first_chunk = jax.tree.map(lambda x: x[:4], sweep.agent_inputs(grid, np.arange(2)))
    out = fn(*sweep.place(first_chunk, sweep.make_mesh()), np.int32(2))  # the chunked program
    sharding = out.metrics["episode_return"].sharding
    diff = lambda a, b: max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    print(json.dumps({
        "devices": len(devices),
        "spec_is_agents": sharding.spec == jax.sharding.PartitionSpec(sweep.AXIS),
        "device_set": sorted(d.id for d in sharding.device_set),
        "shard_shapes": [s.data.shape for s in out.metrics["episode_return"].addressable_shards],
        "diff_sharded": diff(sharded.metrics, alone.metrics),
        "diff_chunked": diff(chunked.metrics, alone.metrics),
        "calls": [[u, s, len(r)] for u, s, r in calls],
        "num_updates": config.num_updates,
        "batch": config.batch_size,
    }))
    """
)


@pytest.mark.slow
def test_sharded_sweep_over_4_host_devices(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    config = {k: getattr(CONFIG, k) for k in ("num_envs", "num_steps", "total_timesteps")}
    config |= {"update_epochs": 1, "num_minibatches": 2}
    out = finish(
        python(
            [str(script), json.dumps(config)],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        ),
        TIMEOUT,
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["devices"] == 4
    assert got["spec_is_agents"] and got["device_set"] == [0, 1, 2, 3]
    assert got["shard_shapes"] == [[1, CONFIG.num_updates]] * 4  # 4 agents, 1 per device
    assert got["diff_sharded"] <= 1e-5 and got["diff_chunked"] <= 1e-5
    # one report per interval for the whole sweep, each with all 8 agents' returns
    updates, batch = got["num_updates"], got["batch"]
    assert got["calls"] == [[u, u * batch, 8] for u in (2, 4)] and updates == 4


def cli_sweep(out_dir, *extra: str) -> list[str]:
    return [
        "-m",
        "jaxpo",
        "sweep",
        "--grid",
        "learning_rate=1e-3,3e-4",
        "--grid",
        "clip_eps=0.1,0.3",
        "--seeds",
        "2",
        "--total-timesteps",
        str(CONFIG.total_timesteps),
        "--set",
        "num_envs=2",
        "--set",
        "num_steps=8",
        "--set",
        "hidden_sizes=8,8",
        "--set",
        "update_epochs=1",
        "--set",
        "num_minibatches=2",
        "--no-progress",
        "--host-devices",
        "1",
        "--out",
        str(out_dir),
        *extra,
    ]


def read_table(path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_produce_the_single_process_table(tmp_path):
    port = free_port()
    procs = [
        python(
            cli_sweep(
                tmp_path / "multi",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(pid),
            )
        )
        for pid in range(2)
    ]
    outputs = [finish(p, TIMEOUT) for p in procs]
    assert "on 2 device(s)" in outputs[0] and "wrote" in outputs[0]
    assert "wrote" not in outputs[1]  # process 1 trained its share; process 0 wrote
    finish(python(cli_sweep(tmp_path / "single")), TIMEOUT)
    multi, single = (
        read_table(tmp_path / "multi/table.csv"),
        read_table(tmp_path / "single/table.csv"),
    )
    assert len(single) == 8 and len(multi) == len(single)
    assert list(multi[0]) == list(single[0])
    for a, b in zip(multi, single, strict=True):
        assert (a["member"], a["seed"]) == (b["member"], b["seed"])
        for column in a:
            np.testing.assert_allclose(float(a[column]), float(b[column]), rtol=1e-5, atol=1e-5)

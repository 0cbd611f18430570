"""Every bad input is refused cleanly: exit 2 (or ``ValueError``), the field or file named,
no traceback, and nothing compiled.

The cases are a table across ``train``, ``sweep``, ``eval``, ``render``, ``plot``,
``settings``, ``--resume`` and the Python API: every field kind (non-numeric, negative,
zero, NaN, inf, wrong type, out of range), malformed specs, bad paths, damaged and
mismatched run folders. "Nothing compiled": every program jaxpo compiles (the training
program, evaluation's and rendering's) is built through ``jax.jit``, which the cases replace
by a counting wrapper; a refusal must come before any of them runs. (JAX's own one-op
programs, such as a dtype conversion or seeding a key, are not jaxpo programs.)
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import pytest

import jaxpo
from jaxpo import checkpoint, cli, evaluate, runs, sweep
from jaxpo.sweep import runner

#: names of the jitted jaxpo programs run since the counter was installed.
PROGRAMS: list[str] = []
REAL_JIT = jax.jit


def counting_jit(fun: Callable, *args, **kwargs) -> Callable:
    """``jax.jit`` that records each call of the program it builds in :data:`PROGRAMS`."""
    jitted = REAL_JIT(fun, *args, **kwargs)

    @functools.wraps(fun)
    def call(*a, **k):
        PROGRAMS.append(getattr(fun, "__name__", repr(fun)))
        return jitted(*a, **k)

    return call


def install_counter(patch: pytest.MonkeyPatch) -> None:
    """Counts jaxpo's programs from now on; cached ones are dropped so they are rebuilt."""
    patch.setattr(jax, "jit", counting_jit)
    runner.make_sweep_fn.cache_clear()
    evaluate.batched_returns.cache_clear()
    PROGRAMS.clear()


@pytest.fixture(autouse=True)
def count_programs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    install_counter(monkeypatch)
    yield


HPARAMS = ("learning_rate", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef")
HPARAM_VALUES = ("abc", "-1", "nan", "inf", "-inf", "")
LOOP_FIELDS = ("num_envs", "num_steps", "update_epochs", "num_minibatches", "total_timesteps")
LOOP_VALUES = ("0", "-3", "abc", "1.5", "nan")
OTHER_FIELDS = [("hidden_sizes", v) for v in ("", "0,64", "a,b", "-4")] + [
    ("activation", "foo"),
    ("cell", "rnn"),
    ("cell_size", "0"),
    ("cell_size", "abc"),
    ("normalize_obs", "maybe"),
    ("normalize_obs", "2"),
    ("adam_eps", "0"),
    ("adam_eps", "-1"),
    ("adam_eps", "nan"),
    ("adam_eps", "abc"),
    ("log_std_init", "nan"),
    ("log_std_init", "inf"),
    ("action_mode", "foo"),
    ("max_consecutive_skips", "0"),
    ("brax_backend", "foo"),
    ("episode_length", "0"),
    ("episode_length", "-1"),
    ("episode_length", "abc"),
]
#: ``--set`` items refused by name, and a word the message must hold.
NAMES = [
    ("foo=1", "foo"),
    ("=1", "NAME=VALUE"),
    ("learning_rate", "NAME=VALUE"),
    ("cg_iters=5", "cg_iters"),
    ("algo=trpo", "--algo"),
    ("env_id=gymnax:Pendulum-v1", "--env"),
    ("progress_interval=7", "--progress-interval"),
    ("seeds=3", "--seeds"),
]
DISTS = (
    "loguniform:0:1",
    "loguniform:1:0",
    "uniform:1",
    "foo:1:2",
    "choice:",
    "uniform:a:b",
    "choice:a",
    "uniform:0:inf",
)


def set_cases() -> list[tuple[str, list[str], str]]:
    """``train --set`` and ``sweep --set`` with a bad value of every field kind."""
    cases = []
    for name in HPARAMS:
        cases += [(f"set-{name}-{v!r}", ["--set", f"{name}={v}"], name) for v in HPARAM_VALUES]
    for name in LOOP_FIELDS:
        cases += [(f"set-{name}-{v}", ["--set", f"{name}={v}"], name) for v in LOOP_VALUES]
    cases += [(f"set-{n}-{v!r}", ["--set", f"{n}={v}"], n) for n, v in OTHER_FIELDS]
    cases += [(f"set-name-{item}", ["--set", item], word) for item, word in NAMES]
    return cases


def flag_cases() -> list[tuple[str, list[str], str]]:
    """Count flags and budgets shared by ``train`` and ``sweep``."""
    return [
        ("seeds-0", ["--seeds", "0"], "--seeds"),
        ("seeds--1", ["--seeds", "-1"], "--seeds"),
        ("budget-0", ["--total-timesteps", "0"], "total_timesteps"),
        ("budget--5", ["--total-timesteps", "-5"], "total_timesteps"),
        ("budget-under-a-batch", ["--total-timesteps", "100"], "total_timesteps"),
        ("progress-interval--1", ["--progress-interval", "-1"], "--progress-interval"),
        ("host-devices-0", ["--host-devices", "0"], "--host-devices"),
        ("algo", ["--algo", "foo"], "foo"),
        ("env-backend", ["--env", "nope:CartPole-v1"], "nope"),
        ("env-name", ["--env", "gymnax:Nope-v0"], "Nope-v0"),
        ("env-unsupported", ["--env", "brax:swimmer"], "swimmer"),
    ]


def sweep_cases() -> list[tuple[str, list[str], str]]:
    """Member specs and sweep-only flags."""
    cases = []
    for name in ("learning_rate", "clip_eps"):
        for values in ("", "a,b", "1e-3,nan", "-1,0.1"):
            cases.append((f"grid-{name}-{values!r}", ["--grid", f"{name}={values}"], name))
    cases += [
        ("grid-static", ["--grid", "num_envs=4,8"], "num_envs"),
        ("grid-unknown", ["--grid", "foo=1,2"], "foo"),
        ("grid-no-equals", ["--grid", "learning_rate"], "NAME=VALUE"),
        ("grid-twice", ["--grid", "clip_eps=0.1", "--grid", "clip_eps=0.2"], "clip_eps"),
        ("random-no-dist", ["--random", "2"], "--dist"),
        ("dist-no-random", ["--dist", "learning_rate=uniform:0:1"], "--random"),
        ("random--1", ["--random", "-1", "--dist", "clip_eps=uniform:0.1:0.2"], "--random"),
        ("dist-static", ["--random", "2", "--dist", "num_steps=uniform:1:2"], "num_steps"),
        ("top-0", ["--grid", "clip_eps=0.1", "--top", "0"], "--top"),
        ("chunk-0", ["--grid", "clip_eps=0.1", "--chunk-size", "0"], "--chunk-size"),
        ("chunk--2", ["--grid", "clip_eps=0.1", "--chunk-size", "-2"], "--chunk-size"),
        ("nothing", [], "nothing to sweep"),
    ]
    cases += [
        (f"dist-{spec}", ["--random", "2", "--dist", f"learning_rate={spec}"], "learning_rate")
        for spec in DISTS
    ]
    for point in ("learning_rate=abc", "learning_rate", "foo=1", "num_envs=4", "clip_eps=-1"):
        word = point.partition("=")[0] if "=" in point else "NAME=VALUE"
        cases.append((f"point-{point}", ["--point", point], word))
    return cases


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-update CartPole run (compiled once, before any case is counted)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    argv = ["train", "--total-timesteps", "1024", "--seeds", "2", "--no-progress"]
    with pytest.MonkeyPatch.context() as patch:
        install_counter(patch)
        assert cli.main([*argv, "--out", str(out)]) == 0
    assert PROGRAMS, "the counter must see the training program (else it proves nothing)"
    PROGRAMS.clear()
    return out


@pytest.fixture
def paths(tmp_path: Path, finished: Path) -> dict[str, Path]:
    """Bad and good paths for one case: a file, a folder under a file, damaged runs."""
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    garbage = tmp_path / "garbage"
    shutil.copytree(finished, garbage)
    (garbage / checkpoint.RUN_FILE).write_text("{ not json")
    other = tmp_path / "other_algo"
    shutil.copytree(finished, other)
    run = json.loads((other / checkpoint.RUN_FILE).read_text())
    run["config"]["algo"] = "nope"
    (other / checkpoint.RUN_FILE).write_text(json.dumps(run))
    return {
        "file": tmp_path / "file",
        "under_file": tmp_path / "file" / "sub",
        "empty": tmp_path / "empty",
        "missing": tmp_path / "missing",
        "garbage": garbage,
        "other_algo": other,
        "done": finished,
        "png": tmp_path / "out.png",
        "gif": tmp_path / "out.gif",
    }


def path_cases() -> list[tuple[str, list[str], str]]:
    """Commands on bad paths (``{key}`` is filled from the ``paths`` fixture)."""
    budget = ["--total-timesteps", "1024"]
    return [
        ("train-out-file", ["train", *budget, "--out", "{file}"], "{file}"),
        ("train-out-under-file", ["train", *budget, "--out", "{under_file}"], "{under_file}"),
        ("train-out-occupied", ["train", *budget, "--out", "{done}"], "--overwrite"),
        ("sweep-out-file", ["sweep", "--grid", "clip_eps=0.1", "--out", "{file}"], "{file}"),
        ("sweep-out-occupied", ["sweep", "--grid", "clip_eps=0.1", "--out", "{done}"], "{done}"),
        ("resume-missing", ["train", "--resume", "{missing}"], "{missing}"),
        ("resume-file", ["train", "--resume", "{file}"], "{file}"),
        ("resume-empty", ["train", "--resume", "{empty}"], "{empty}"),
        ("resume-garbage", ["train", "--resume", "{garbage}"], "{garbage}"),
        ("resume-other-algo", ["train", "--resume", "{other_algo}"], "{other_algo}"),
        ("resume-set", ["train", "--resume", "{done}", "--set", "gamma=0.9"], "--set"),
        ("resume-algo", ["train", "--resume", "{done}", "--algo", "trpo"], "--algo"),
        ("resume-env", ["train", "--resume", "{done}", "--env", "gymnax:Acrobot-v1"], "--env"),
        ("resume-seeds", ["train", "--resume", "{done}", "--seeds", "3"], "--seeds"),
        ("resume-overwrite", ["train", "--resume", "{done}", "--overwrite"], "--overwrite"),
        ("resume-out", ["train", "--resume", "{done}", "--out", "{empty}"], "--out"),
        ("resume-shorter", ["train", "--resume", "{done}", "--total-timesteps", "512"], "512"),
        ("resume-checkpoint-0", ["train", "--resume", "{done}", "--checkpoint-every", "0"], "--c"),
        ("eval-missing", ["eval", "{missing}"], "{missing}"),
        ("eval-file", ["eval", "{file}"], "{file}"),
        ("eval-empty", ["eval", "{empty}"], "{empty}"),
        ("eval-garbage", ["eval", "{garbage}"], "{garbage}"),
        ("eval-other-algo", ["eval", "{other_algo}"], "{other_algo}"),
        ("eval-episodes-0", ["eval", "{done}", "--episodes", "0"], "episodes"),
        ("eval-episodes--3", ["eval", "{done}", "--episodes", "-3"], "episodes"),
        ("eval-agent-99", ["eval", "{done}", "--agent", "99"], "agent"),
        ("eval-agent--1", ["eval", "{done}", "--agent", "-1"], "agent"),
        ("render-missing", ["render", "{missing}", "--out", "{gif}"], "{missing}"),
        ("render-garbage", ["render", "{garbage}", "--out", "{gif}"], "{garbage}"),
        ("render-ext", ["render", "{done}", "--out", "{png}"], ".gif"),
        ("render-steps-0", ["render", "{done}", "--out", "{gif}", "--max-steps", "0"], "steps"),
        ("render-agent-9", ["render", "{done}", "--out", "{gif}", "--agent", "9"], "agent"),
        ("plot-missing", ["plot", "{missing}", "--out", "{png}"], "{missing}"),
        ("plot-empty", ["plot", "{empty}", "--out", "{png}"], "{empty}"),
        ("plot-metric", ["plot", "{done}", "--out", "{png}", "--metric", "foo"], "foo"),
        ("plot-out-dir", ["plot", "{done}", "--out", "{empty}"], ".png"),
        ("settings-algo", ["settings", "--algo", "foo"], "foo"),
        ("settings-env", ["settings", "--env", "gymnax:Nope-v0"], "Nope-v0"),
    ]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``jaxpo ARGV`` in this process: (exit status, stdout + stderr); no program run."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    out = capsys.readouterr()
    assert not PROGRAMS, f"ran the compiled program(s) {PROGRAMS}"
    return status, out.out + out.err


def check_refused(status: int, text: str, word: str) -> None:
    assert status == 2, text
    assert word in text, text
    assert "Traceback" not in text, text


@pytest.mark.parametrize(
    ("argv", "word"),
    [pytest.param(a, w, id=i) for i, a, w in set_cases() + flag_cases()],
)
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_run_flags_are_refused(command, argv, word, tmp_path, capsys):
    members = ["--grid", "clip_eps=0.1,0.2"] if command == "sweep" else []
    if command == "sweep" and "--grid" in argv:
        members = []
    full = [command, *argv, *members, "--out", str(tmp_path / "out")]
    check_refused(*run_cli(full, capsys), word)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("argv", "word"), [pytest.param(a, w, id=i) for i, a, w in sweep_cases()])
def test_sweep_specs_are_refused(argv, word, tmp_path, capsys):
    check_refused(*run_cli(["sweep", *argv, "--out", str(tmp_path / "o")], capsys), word)


@pytest.mark.parametrize(("argv", "word"), [pytest.param(a, w, id=i) for i, a, w in path_cases()])
def test_paths_are_refused(argv, word, paths, capsys):
    filled = [item.format(**{k: str(v) for k, v in paths.items()}) for item in argv]
    word = word.format(**{k: str(v) for k, v in paths.items()})
    listing = sorted(p.name for p in paths["done"].iterdir())
    check_refused(*run_cli(filled, capsys), word)
    assert sorted(p.name for p in paths["done"].iterdir()) == listing  # left unchanged


HP = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")[1]
CONFIG = jaxpo.Config()
KEY = jax.random.key(0)


def api_cases() -> list[tuple[str, Callable[[], object], str]]:
    """Python API calls that must raise ``ValueError`` naming the field."""
    cases: list[tuple[str, Callable[[], object], str]] = [
        (f"set-{v!r}", lambda v=v: HP.set(learning_rate=v), "learning_rate")
        for v in ("abc", None, [1, [2]], float("nan"), -1.0, True, {"a": 1})
    ]
    cases += [
        (f"grid-{v!r}", lambda v=v: sweep.grid(HP, learning_rate=v), "learning_rate")
        for v in (1e-3, "abc", [], ["a"], [float("inf")], [[1e-3, 2e-3]])
    ]
    cases += [
        ("grid-static", lambda: sweep.grid(HP, num_envs=[4, 8]), "num_envs"),
        ("grid-unknown", lambda: sweep.grid(HP, foo=[1.0]), "foo"),
        ("points-non-mapping", lambda: sweep.points(HP, [3]), "mapping"),
        ("points-value", lambda: sweep.points(HP, [{"clip_eps": "x"}]), "clip_eps"),
        ("points-range", lambda: sweep.points(HP, [{"clip_eps": -1.0}]), "clip_eps"),
        ("random-num-0", lambda: sweep.random(HP, KEY, 0, clip_eps=("uniform", 0.1, 0.2)), "num"),
    ]
    cases += [
        (f"random-{spec!r}", lambda s=spec: sweep.random(HP, KEY, 2, clip_eps=s), "clip_eps")
        for spec in (("uniform", "a", 2), ("choice", 3), ("uniform", 1.0), ("normal", 0, 1), 5)
    ]
    cases += [
        (f"config-{n}={v!r}", lambda n=n, v=v: sweep.run(CONFIG.replace(**{n: v}), HP), n)
        for n, v in (
            ("num_envs", [4, 8]),
            ("num_envs", 0),
            ("num_steps", 2.5),
            ("hidden_sizes", [64, 64]),
            ("normalize_obs", 1),
            ("adam_eps", "a"),
            ("total_timesteps", 0),
            ("activation", "foo"),
            ("cell", "rnn"),
            ("cell_size", -1),
        )
    ]
    # a recurrent run's minibatches are whole environments: 4 envs cannot make 3 of them
    recurrent = CONFIG.replace(cell="gru", num_envs=4, num_minibatches=3)
    cases.append(("config-recurrent-minibatches", lambda: sweep.run(recurrent, HP), "num_envs"))
    cases += [
        ("config-foreign-field", lambda: jaxpo.Config(cg_iters=3), "cg_iters"),
        ("config-unknown-field", lambda: CONFIG.replace(foo=1), "foo"),
        ("preset-algo", lambda: jaxpo.presets.get("foo", "gymnax:CartPole-v1"), "foo"),
        ("preset-env", lambda: jaxpo.presets.get("ppo", "gymnax:Nope-v0"), "Nope-v0"),
        ("seeds-empty", lambda: sweep.run(CONFIG, HP, seeds=[]), "seeds"),
    ]
    return cases


@pytest.mark.parametrize("call, word", [pytest.param(c, w, id=i) for i, c, w in api_cases()])
def test_python_api_refuses(call, word):
    with pytest.raises(ValueError, match=word):
        call()
    assert not PROGRAMS, PROGRAMS


def test_api_paths_are_refused(paths):
    for path in ("file", "under_file"):
        with pytest.raises(ValueError, match="output folder"):
            runs.prepare_output(paths[path])
    with pytest.raises(ValueError, match="holds another run"):
        runs.prepare_output(paths["done"])
    for path in ("missing", "empty"):
        with pytest.raises(FileNotFoundError, match=str(paths[path])):
            checkpoint.load(paths[path])
    for path in ("garbage", "other_algo"):
        with pytest.raises(ValueError, match=str(paths[path])):
            checkpoint.load(paths[path])


def test_the_table_has_at_least_150_cases():
    cli_cases = 2 * len(set_cases() + flag_cases()) + len(sweep_cases()) + len(path_cases())
    assert cli_cases + len(api_cases()) + 9 >= 150

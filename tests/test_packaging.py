"""The wheel installs the top-level ``envs/`` folder as ``jaxpo.envs``, never a bare ``envs``."""

import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (path,) = out.glob("jaxpo-*.whl")
    return path


def test_wheel_maps_envs_under_jaxpo(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "jaxpo/envs/__init__.py" in names
    assert "jaxpo/envs/brax_adapter.py" in names
    assert not any(n.startswith("envs/") for n in names), "a bare top-level envs package shipped"
    for init in (ROOT / "jaxpo").rglob("__init__.py"):
        package = init.relative_to(ROOT).as_posix()
        assert package in names, f"{package} is missing from the wheel (pyproject packages)"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "jaxpo = jaxpo.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_wheel_installs_and_imports_in_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # Dependencies (jax, gymnax, ...) come from this interpreter's site-packages, appended
    # after the fresh venv's own, so jaxpo itself can only come from the installed wheel.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = textwrap.dedent(
        f"""
        import importlib.util, jaxpo, jaxpo.envs, jaxpo.algos, jaxpo.natgrad
        assert jaxpo.__file__.startswith({str(env_dir)!r}), jaxpo.__file__
        assert jaxpo.envs.__file__.startswith({str(env_dir)!r}), jaxpo.envs.__file__
        assert importlib.util.find_spec("envs") is None, "bare 'envs' is importable"
        env = jaxpo.envs.make("gymnax:CartPole-v1")
        print(env.name, env.observation_shape)
        """
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gymnax:CartPole-v1 (4,)" in done.stdout

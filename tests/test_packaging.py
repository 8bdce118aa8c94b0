"""paygate as a utility's IT department installs it: built into an sdist and a wheel, the wheel
installed into a fresh venv (not editable, no checkout on the path), and run from there.

The build and install take most of a minute, so the one test that does them carries the marker
``wheel``: ``make test`` runs it through ``make wheel-check`` (its ``pytest`` step leaves it
out), and a plain ``pytest`` runs it with everything else.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from setuptools import find_packages
from typer.testing import CliRunner

import paygate
from paygate.api.routes.reference import ASSETS
from paygate.cli import app
from paygate.store import migrate

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
MIGRATIONS = REPO / "migrations"
REVISIONS = sorted(p.name for p in (MIGRATIONS / "versions").glob("0*.py"))


def test_every_package_in_the_tree_is_in_the_distribution() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"paygate._migrations": "migrations"}
    expected = set(find_packages(str(REPO), include=["paygate", "paygate.*"]))
    expected |= {
        "paygate._migrations" + name.removeprefix("migrations")
        for name in find_packages(str(REPO), include=["migrations", "migrations.*"])
    }
    assert sorted(setuptools["packages"]) == sorted(expected)


def test_the_version_has_one_source() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "paygate.__version__"}
    assert importlib.metadata.version("paygate") == paygate.__version__


def test_paygate_version_and_python_m_paygate() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"paygate {paygate.__version__}\n"
    as_module = subprocess.run(
        [sys.executable, "-m", "paygate", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert as_module.returncode == 0, as_module.stderr
    assert as_module.stdout == f"paygate {paygate.__version__}\n"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_migrations_are_frozen() -> None:
    """Revisions import nothing from paygate, and the environment only the schema's tables:
    never the runtime settings (paygate.config), which would make a migration's meaning
    depend on the environment it runs in."""
    for path in (MIGRATIONS / "versions").glob("*.py"):
        assert not {n for n in _imports(path) if n.split(".")[0] == "paygate"}, path
    assert {n for n in _imports(MIGRATIONS / "env.py") if n.startswith("paygate")} == {
        "paygate.store.schema"
    }


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (
        "Apache License\n                           Version 2.0" in (REPO / "LICENSE").read_text()
    )
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_make_test_runs_the_wheel_check_and_ci_runs_make_test() -> None:
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ci[-1] == "exec make test"
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pytest -q -m 'not wheel'" in plan
    assert "pytest -q -m wheel tests/test_packaging.py" in plan


def _run(
    argv: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.wheel
def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    # Nothing of the checkout or of this test run may leak into the installed paygate.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PAYGATE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    dist = tmp_path / "dist"
    built = _ok(_run([sys.executable, "-m", "build", "--outdir", dist, REPO], cwd=REPO, env=env))
    # The wheel is built from the sdist, so both must carry the migrations.
    [sdist] = dist.glob("paygate-*.tar.gz")
    [wheel] = dist.glob("paygate-*-py3-none-any.whl")
    assert not [line for line in built.splitlines() if "license" in line.lower() and "warn" in line]
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "migrations/env.py", "migrations/script.py.mako"} <= in_sdist
    assert {f"migrations/versions/{name}" for name in REVISIONS} <= in_sdist
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(f"paygate-{version}.dist-info/METADATA").decode()
    assert {
        "paygate/_migrations/env.py",
        "paygate/_migrations/script.py.mako",
        "paygate/py.typed",
        f"paygate-{version}.dist-info/licenses/LICENSE",
    } <= in_wheel
    assert {f"paygate/_migrations/versions/{name}" for name in REVISIONS} <= in_wheel
    # The API reference page's files (GET /docs): served from the package, never a CDN.
    assert {f"paygate/api/static/{name}" for name in ASSETS} <= in_wheel
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert not [name for name in in_wheel if name.startswith(("migrations/", "tests/"))]

    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env))
    bin_ = venv / "bin"
    _ok(_run([bin_ / "python", "-m", "pip", "install", "--quiet", wheel], cwd=tmp_path, env=env))

    work = tmp_path / "work"  # no alembic.ini, no migrations/, no paygate/ here
    work.mkdir()
    where = _ok(
        _run(
            [
                bin_ / "python",
                "-c",
                "import paygate.store.migrate as m; print(m.__file__); print(m.migrations_dir())",
            ],
            cwd=work,
            env=env,
        )
    )
    assert all(Path(line).is_relative_to(venv) for line in where.split()), where

    paygate_ = [bin_ / "paygate"]
    assert _ok(_run([*paygate_, "--version"], cwd=work, env=env)) == f"paygate {version}\n"
    as_module = _run([bin_ / "python", "-m", "paygate", "--version"], cwd=work, env=env)
    assert _ok(as_module) == f"paygate {version}\n"

    db = "sqlite:///paygate.db"
    missing = _run([*paygate_, "db", "current", "--database-url", db], cwd=work, env=env)
    assert missing.returncode == 2 and "no database at" in missing.stderr, missing.stderr
    assert not (work / "paygate.db").exists()

    head = migrate.head_revision()
    upgraded = _ok(_run([*paygate_, "db", "upgrade", "--database-url", db], cwd=work, env=env))
    assert f"database at revision {head}" in upgraded
    current = _ok(_run([*paygate_, "db", "current", "--database-url", db], cwd=work, env=env))
    assert f"database: {head}  code: {head}" in current
    verified = _ok(_run([*paygate_, "audit", "verify", "--database-url", db], cwd=work, env=env))
    assert "audit clean" in verified

    demo = _run(
        [*paygate_, "demo", "--database-url", "sqlite:///demo.db", "--accounts", "10"],
        cwd=work,
        env=env,
    )
    assert "audit clean" in _ok(demo)

    # The HTTP gateway opens the database and serves its health check.
    port = _free_port()
    server = subprocess.Popen(
        [*paygate_, "serve", "--port", str(port), "--database-url", db, "--log-level", "warning"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and server.poll() is None and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.2)
        assert status == 200, f"paygate serve did not come up: {server.poll()}"
        for path in ["/docs", *(f"/docs/static/{name}" for name in ASSETS)]:
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert answer.status_code == 200, path
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    # uvicorn stops cleanly, then ends by the signal it was sent.
    assert server.returncode in (0, -signal.SIGTERM), output

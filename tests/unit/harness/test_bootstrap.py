"""The ``./drill`` bootstrap reads its arguments before installing anything: help and read-only commands
never call apt-get, while a command that needs the broker still installs it.

Each case runs a copy of the real script in a scratch root whose venv is already set up (a fake
``.venv/bin/python`` that records how it was called, and a matching stamp), with the broker's binaries
missing, ``id`` saying root, and an ``apt-get`` on PATH that records its call and fails. Nothing is
installed and no broker is started; the control case (``cluster status``) proves the stubs do catch an
apt-get call, so the help cases cannot pass vacuously.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Bootstrap:
    root: Path
    apt_log: Path
    python_log: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.root / 'stubs'}:{os.environ['PATH']}",
            "HOME": str(self.root),
            "DRILL_RABBITMQ_BIN": str(self.root / "no-rabbitmq"),  # the broker is not installed
        }
        return subprocess.run(
            ["sh", str(self.root / "drill"), *args], env=env, capture_output=True, text=True, timeout=30
        )


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bootstrap(tmp_path: Path) -> Bootstrap:
    if shutil.which("python3") is None:
        pytest.skip("the bootstrap needs python3 on PATH")
    root = tmp_path / "repo"
    (root / "stubs").mkdir(parents=True)
    (root / "no-rabbitmq").mkdir()
    shutil.copy(REPO / "drill", root / "drill")
    (root / "pyproject.toml").write_text('[project]\nname = "scratch"\n')
    apt_log, python_log = tmp_path / "apt-get.log", tmp_path / "python.log"
    _script(root / "stubs" / "apt-get", f'echo "apt-get $*" >>"{apt_log}"\nexit 100\n')
    _script(root / "stubs" / "id", "echo 0\n")  # root, so apt-get would really be tried
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    _script(venv_bin / "python", f'echo "$*" >>"{python_log}"\n')
    # The stamp the script expects for this pyproject and python3: the venv counts as set up.
    want = subprocess.run(
        ["sh", "-c", "(cat pyproject.toml; python3 -c 'import sys; print(sys.version)') | cksum | cut -d' ' -f1"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (root / ".venv" / ".drill-installed").write_text(want + "\n")
    return Bootstrap(root, apt_log, python_log)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["-h"],
        ["cluster", "--help"],
        ["cluster", "up", "--help"],
        ["run", "kill-leader", "--dry-run"],
        ["demo", "--dry-run"],
        ["compare", "a", "b"],
        ["report", "runs/x"],
        ["audit", "runs/x"],
        ["chaos", "list"],
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_help_and_read_only_commands_install_nothing(bootstrap: Bootstrap, args: list[str]) -> None:
    result = bootstrap.run(*args)
    assert result.returncode == 0, result.stderr
    assert not bootstrap.apt_log.exists(), bootstrap.apt_log.read_text()
    assert "apt-get" not in result.stderr
    # ...and the CLI was still reached, with the arguments as given.
    assert bootstrap.python_log.read_text().splitlines() == [" ".join(["-m", "harness", *args])]


@pytest.mark.parametrize("args", [["cluster", "status"], ["demo"], ["test", "--", "--help"]])
def test_commands_that_need_the_broker_still_install_it(bootstrap: Bootstrap, args: list[str]) -> None:
    result = bootstrap.run(*args)
    # The stubbed apt-get fails, so the bootstrap stops there, saying what it tried and what to run.
    assert result.returncode != 0
    assert bootstrap.apt_log.read_text().startswith("apt-get update")
    assert "apt-get update failed" in result.stderr
    assert not bootstrap.python_log.exists()

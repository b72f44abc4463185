"""The README's five-minute tour, run as written, in the venv that ``make demo`` builds: its
shell blocks, in order, in one bash session, from the repository's root, with that venv's
``revoctl`` on PATH and a fresh state of its own. The gateway block runs twice, as a user
who pastes it again would.

The venv is ``REVOCTL_TOUR_VENV`` when set (``.ci/run`` builds it with ``make demo`` in a
fresh clone with an empty ``HOME``); otherwise the test builds one with ``make demo`` itself,
from the lock, so a dependency the tour needs and ``make demo`` does not install fails here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.readme import REPO, clean_environment, tour_blocks

TOUR_VENV = os.environ.get("REVOCTL_TOUR_VENV")
DEMO_SECONDS = 600
"""``make demo`` on a machine whose pip cache is cold downloads every locked package."""


def demo_venv(tmp_path: Path) -> tuple[Path, Path]:
    """The venv ``make demo`` built, and the checkout it was built from."""
    if TOUR_VENV:
        venv = Path(TOUR_VENV)
        assert (venv / "bin" / "revoctl").exists(), f"REVOCTL_TOUR_VENV={venv} has no revoctl"
        checkout = venv.parent
        return venv, checkout if (checkout / "README.md").exists() else REPO
    venv, home = tmp_path / "demo-venv", tmp_path / "demo-home"
    home.mkdir()
    cache = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    built = subprocess.run(
        ["make", "-C", str(REPO), "demo", f"VENV={venv}"],
        env=clean_environment(HOME=str(home), PIP_CACHE_DIR=cache),
        capture_output=True,
        text=True,
        timeout=DEMO_SECONDS,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    assert "overall: healthy" in built.stdout
    return venv, REPO


@pytest.mark.slow
def test_the_readme_tour_runs_as_written_in_the_demo_venv(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("make") is None:
        pytest.skip("the tour uses curl, and make builds its venv")
    blocks = [block.text for block in tour_blocks()]
    assert len(blocks) == 3
    venv, checkout = demo_venv(tmp_path)
    script = "set -euo pipefail\n" + "\n".join([*blocks, blocks[2]])
    env = clean_environment(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        TMPDIR=str(tmp_path),  # where the tour's mktemp makes its state directory
        NO_COLOR="1",
    )
    tour = subprocess.Popen(
        ["bash", "-c", script],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = tour.communicate(timeout=300)
    finally:
        # The tour's own process group, by its id: bash, and whatever it left running (the
        # gateway, its workers, the stand-in); nothing else on the machine.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tour.pid, signal.SIGKILL)
    assert tour.returncode == 0, out[-2000:] + err[-3000:]
    assert "database.url" in out and "${secret:tour-db-file}" in out
    assert '"allowed": 20' in out and '"denied": 5' in out
    assert "exit 1: the last check was denied" in out
    models = re.findall(r'"model":"(\w+)"', out)
    assert models == ["small", "spare", "small"] * 2, out
    assert 'revoctl_breaker_state{breaker="openai_api"}' in out
    assert "overall:" in out
    assert "sk-tour" not in out.replace("--api-key sk-tour", "")


def test_the_tour_gives_up_waiting_for_a_gateway_that_does_not_start(tmp_path: Path) -> None:
    """The wait loop is bounded and says why: a gateway that cannot start (here: nothing
    listens) ends the block with the end of its log, not a loop that spins forever."""
    block = tour_blocks()[2].text
    wait = "\n".join(line for line in block.splitlines() if line.startswith(("ready", "for _ in")))
    log = tmp_path / "state.log"
    log.write_text("error: the runtime extra is not installed\n")
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nseq() {{ echo 1 2; }}\n{wait}"],
        env=clean_environment(PATH=os.environ["PATH"], REVOCTL_HOME=str(tmp_path / "state")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "not up after" in done.stdout
    assert "the runtime extra is not installed" in done.stdout

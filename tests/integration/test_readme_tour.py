"""The README's five-minute tour, run as written: its shell blocks, in order, in one bash
session, from the repository's root, with ``revoctl`` on PATH and a fresh state of its own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def tour_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the tour uses curl")
    blocks = tour_blocks()
    assert len(blocks) == 3
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),  # where the tour's mktemp makes its state directory
        "NO_COLOR": "1",
    }
    env.pop("REVOCTL_HOME", None)
    env.pop("REVOCTL_CONFIG", None)
    tour = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = tour.communicate(timeout=240)
    finally:
        if tour.poll() is None:
            os.killpg(tour.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-f", "--", "--port 1871[12]"], check=False)  # anything left
    assert tour.returncode == 0, err[-3000:]
    assert "database.url" in out and "${secret:tour-db-file}" in out
    assert '"allowed": 20' in out and '"denied": 5' in out
    assert "exit 1: the last check was denied" in out
    models = re.findall(r'"model":"(\w+)"', out)
    assert models == ["small", "spare", "small"], out
    assert 'revoctl_breaker_state{breaker="openai_api"}' in out
    assert "overall:" in out
    assert "sk-tour" not in out.replace("--api-key sk-tour", "")

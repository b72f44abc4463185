"""deploy/Dockerfile builds, and the image it builds answers ``/health/live`` as the
unprivileged user, on a read-only root with a world-writable state volume (as a Kubernetes
pod with an emptyDir runs it), and its own HEALTHCHECK passes.

No container registry is reachable here, so the base image is made from Debian's packages:
``debootstrap`` (bookworm: Python 3.11 and its venv module) into a temporary folder, with this
machine's CA bundle (pip inside the build reaches the package index as this machine does),
imported into podman's storage once and reused (its tag carries the bundle's hash). The
build then runs with ``--build-arg BASE=`` that image. Podman runs rootful with runc; this
sandbox refuses podman's default open-files and processes limits, hence ``--ulimit``.
Measured here (2 shared cores): debootstrap 62 s and import 7 s by hand; the whole test cold
211 s (base 139 s, build 66 s), warm 15 s (base and layers reused).

Left in podman's storage for the next run: the base image and ``localhost/revoctl:test``
(``podman rmi`` them to reclaim ~600 MB).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.support.deploy import DOCKERFILE
from tests.support.fleet import free_port
from tests.support.readme import REPO

pytestmark = pytest.mark.slow

SUITE = "bookworm"
IMAGE = "localhost/revoctl:test"
CONTAINER_CA = "/etc/ssl/certs/ca-certificates.crt"
HOST_CA = Path(os.environ.get("PIP_CERT") or CONTAINER_CA)
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
READY_SECONDS = 60
STEP_SECONDS = 900
TOOLS = ("podman", "debootstrap", "runc")


def _tool(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _skip(reason: str) -> None:
    pytest.skip(f"the image cannot be built or run on this machine: {reason}")


def _run(
    *args: str, timeout: float = STEP_SECONDS, stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, stdin=stdin, capture_output=True, text=True, timeout=timeout)


def debian_mirror() -> str | None:
    """The Debian mirror apt uses on this machine for ``SUITE`` (deb822 or one-line lists)."""
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in lists:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"(?m)^(\w[\w-]*):\s*(.*)$", stanza))
                if (
                    "deb" in fields.get("Types", "").split()
                    and SUITE in fields.get("Suites", "").split()
                ):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    return None


def base_image() -> str:
    """Debian ``SUITE`` with python3, python3-venv and this machine's CA bundle, made once."""
    ca_hash = hashlib.sha256(HOST_CA.read_bytes()).hexdigest()[:12]
    tag = f"localhost/revoctl-base:{SUITE}-{ca_hash}"
    if _run("podman", "image", "exists", tag).returncode == 0:
        return tag
    mirror = debian_mirror()
    if mirror is None:
        _skip(f"no apt source for Debian {SUITE} to debootstrap from")
    with tempfile.TemporaryDirectory(prefix="revoctl-base-") as scratch:
        root = Path(scratch) / "root"
        made = _run(
            "debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
            SUITE, str(root), str(mirror),
        )  # fmt: skip
        if made.returncode != 0:
            _skip(f"debootstrap {SUITE} failed: {(made.stdout + made.stderr)[-1500:]}")
        shutil.copyfile(HOST_CA, root / CONTAINER_CA.lstrip("/"))
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = _run("podman", "import", "-q", "-", tag, stdin=tar.stdout)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait(timeout=60)
        assert imported.returncode == 0, imported.stderr
    return tag


@pytest.fixture(scope="module")
def image() -> str:
    """The image of deploy/Dockerfile, built on the Debian base (skips with the reason when
    podman cannot run here)."""
    missing = [name for name in TOOLS if _tool(name) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (.ci/run installs them)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure")
        _skip(reason)
    if os.geteuid() != 0:
        _skip("the test runs podman rootful, and this process is not root")
    base = base_image()
    smoke = _run("podman", "run", "--rm", *LIMITS, base, "python3", "-c", "print(1)", timeout=120)
    if smoke.returncode != 0:
        _skip(f"podman cannot run a container: {smoke.stderr.strip()[-1500:]}")
    started = time.monotonic()
    built = _run(
        "podman", "build", "--format", "docker", "--network", "host", *LIMITS,
        "--build-arg", f"BASE={base}", "--build-arg", f"INDEX_CERT={CONTAINER_CA}",
        *_index_url(), "-f", str(DOCKERFILE), "-t", IMAGE, str(REPO),
    )  # fmt: skip
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    print(f"podman build: {time.monotonic() - started:.1f} s")
    return IMAGE


def _index_url() -> list[str]:
    """The package index pip is set to use here (environment, then pip's configuration)."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        found = _run(sys.executable, "-m", "pip", "config", "get", "global.index-url", timeout=60)
        url = found.stdout.strip() if found.returncode == 0 else ""
    return ["--build-arg", f"INDEX_URL={url}"] if url else []


def test_the_image_answers_its_liveness_route_as_an_unprivileged_user(
    image: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"  # what a Kubernetes emptyDir is: a directory anyone may write
    state.mkdir()
    state.chmod(0o777)
    port = free_port()
    name = f"revoctl-test-{uuid.uuid4().hex[:8]}"
    started = _run(
        "podman", "run", "-d", "--name", name, *LIMITS, "-p", f"127.0.0.1:{port}:8080",
        "--read-only", "-v", f"{state}:/var/lib/revoctl", "--tmpfs", "/tmp:mode=1777",
        image, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        status, deadline = 0, time.monotonic() + READY_SECONDS
        while status != 200 and time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.3)
        logs = _run("podman", "logs", name, timeout=60)
        assert status == 200, logs.stdout + logs.stderr
        user = _run("podman", "exec", name, "id", "-u", timeout=60)
        assert user.stdout.strip() == "10001"
        home = state / "home"  # made by revoctl, owner-only, inside the 0777 volume
        assert (home.stat().st_uid, oct(home.stat().st_mode & 0o777)) == (10001, "0o700")
        checked = _run("podman", "healthcheck", "run", name, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        _run("podman", "rm", "-f", "-t", "5", name, timeout=120)

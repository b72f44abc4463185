"""Every fenced ``sh`` block of the README, run as written (the tour's are run by
``test_readme_tour.py``): the README is a contract with its reader, and a block that no longer
runs is a broken promise, found here rather than by the next person who pastes it.

Each block runs alone in bash (``set -euo pipefail``) with the venv's ``revoctl`` on PATH (see
`readme_venv`), a fresh ``HOME`` (so the default ``REVOCTL_HOME``, ``~/.local/share/revoctl``,
is fresh too) and a working directory of its own that links the repository's files, as a clone
would have them, so that a file a block writes (``./revoctl.toml``, ``migrate.sql``) never lands
in the checkout. A block passes when it exits 0; a line whose comment says ``# exit N:`` must
exit N. A line that prompts on a TTY reads the block's stdin, which holds one line of text.

What a reader brings and this machine lacks is given per block in `PLANS`: files or secrets
the block assumes (a ``key.pem``), and the reader's own hosts and ports mapped onto the
servers here (the shared PostgreSQL, in a database of the test's own; the shared Redis, under
a key prefix of the test's own; a TLS Redis with a password, started by the test). A block
that starts a server in the foreground is run until that server is ready, then stopped with
its whole process group, by the group's id. The blocks left out are in `NOT_RUN`, each with
the reason; a plan or an exclusion that matches no block fails the suite, so none goes stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from revoctl._dotted import flatten
from tests.support.readme import REPO, Block, clean_environment, readme_blocks, readme_venv

BLOCK_SECONDS = 120
READY_SECONDS = 90


def _toml_under(heading: str) -> str:
    """The first toml block under ``heading``: a configuration the README shows the reader."""
    return next(b.text for b in readme_blocks(language="toml") if b.heading == heading)


RATE_LIMITING_TOML = _toml_under("## Rate limiting")


@dataclass(frozen=True)
class Plan:
    """How one block runs on this machine: what the reader brings, and where their servers are.

    ``rewrite`` and ``env`` may name ``<db_url>``, ``<db_host_path>``, ``<redis_url>``,
    ``<prefix>``, ``<tls_port>``, ``<ca_file>``, ``<redis_password>`` and ``<port>``, filled
    from the services the plan asks for (``postgres``, ``redis``, ``redis_tls``) and a free port.
    """

    name: str = "as written"
    files: dict[str, str] = field(default_factory=dict)
    given: str = ""
    env: dict[str, str] = field(default_factory=dict)
    rewrite: dict[str, str] = field(default_factory=dict)
    services: frozenset[str] = frozenset()
    serves: str = ""


NOT_RUN = {
    "uvicorn examples.fastapi_app.app:app": (
        "serves the FastAPI example on Redis; test_asgi_served.py serves it the same way (two "
        "uvicorn workers) and test_asgi.py runs it in process"
    ),
    "Bearer $(revoctl secrets get revoctl-admin-key)": (
        "calls a running gateway with an admin key; tests/integration/test_admin_api.py makes "
        "the same calls against a real revoctl serve"
    ),
    "8000/status/login": (
        "signs in to a running gateway's status page; tests/integration/test_status_page.py and "
        "tests/e2e/test_status_page_browser.py do the same against a real revoctl serve"
    ),
    "make demo": (
        "make demo builds the venv the tour runs in: test_readme_tour.py runs it (or .ci/run "
        "does, for REVOCTL_TOUR_VENV); make test is the suite this test is part of"
    ),
    "make test PYTEST_ARGS=": "the suite this test is part of: it would run this test again",
    "pytest tests/e2e/test_several_hosts.py": (
        "runs the multi-host test, which the suite runs (HAProxy, PostgreSQL and Redis)"
    ),
    "haproxy -f haproxy.cfg": (
        "starts three gateways and HAProxy on loopback addresses; tests/e2e/test_several_hosts.py "
        "runs that layout and these commands against it"
    ),
    "docker build -f deploy/Dockerfile": (
        "needs docker and a registry for python:3.11-slim; test_deploy_image.py builds the same "
        "Dockerfile with podman on a Debian base and checks /health/live and the HEALTHCHECK"
    ),
    "kubectl create secret generic revoctl-secrets": (
        "needs a Kubernetes cluster; test_deploy_manifests.py validates every manifest and runs "
        "the Job's and the Deployment's commands with the ConfigMap and the Secret's settings"
    ),
    "REVOCTL_SECRETS__PROVIDER=azure_key_vault": (
        "needs an Azure account (a vault and an identity DefaultAzureCredential can use); the "
        "provider itself is tested against the Key Vault stand-in (marker keyvault)"
    ),
}

PLANS: dict[str, tuple[Plan, ...]] = {
    "revoctl health -o json --fail-on degraded": (
        Plan(given="revoctl db migrate > /dev/null   # as make demo leaves the reader's database"),
    ),
    "revoctl secrets set tls-key --from-file": (
        Plan(
            given=(
                "printf 'a pem' > key.pem; printf 'n3w-pa55' > new-password.txt\n"
                "echo -n old-pa55 | revoctl secrets set db-password > /dev/null"
            ),
        ),
    ),
    "revoctl db migrate --sql": (
        Plan(name="sqlite"),
        Plan(
            name="postgres",
            services=frozenset({"postgres"}),
            env={"REVOCTL_DATABASE__URL": "<db_url>"},
        ),
    ),
    "revoctl limits rules -o json": (
        Plan(
            name="the rules above, on the shared Redis",
            files={"revoctl.toml": RATE_LIMITING_TOML},
            services=frozenset({"redis"}),
            env={"REVOCTL_REDIS__URL": "<redis_url>", "REVOCTL_LIMITS__KEY_PREFIX": "<prefix>"},
        ),
    ),
    "export REVOCTL_LIMITS__STORE=redis": (
        Plan(
            name="cache.internal: a TLS Redis with a password, of the test's own",
            files={"revoctl.toml": RATE_LIMITING_TOML},
            given="echo -n '<redis_password>' | revoctl secrets set redis-password > /dev/null",
            services=frozenset({"redis_tls"}),
            env={"SSL_CERT_FILE": "<ca_file>"},
            rewrite={"cache.internal:6380": "127.0.0.1:<tls_port>"},
        ),
    ),
    "revoctl breakers status --watch": (
        Plan(
            name="Ctrl-C after 2 s",
            rewrite={
                "revoctl breakers status --watch": (
                    "timeout --preserve-status -s INT 2 revoctl breakers status --watch"
                )
            },
        ),
    ),
    "revoctl serve --port 8000": (
        Plan(
            name="on a free port, stopped once ready",
            env={"OPENAI_API_KEY": "sk-readme-blocks"},
            rewrite={"--port 8000": "--port <port>"},
            serves="http://127.0.0.1:<port>/health/ready",
        ),
    ),
    "postgresql+asyncpg://app@db.internal": (
        Plan(
            name="db.internal: the shared PostgreSQL, a database of the test's own",
            services=frozenset({"postgres"}),
            env={"PGPASSWORD": "unchecked-by-trust-auth"},
            rewrite={
                "postgresql+asyncpg://app@db.internal:5432/app": "<db_url>",
                "app:${secret:db-password}@db.internal:5432/app": (
                    "postgres:${secret:db-password}@<db_host_path>"
                ),
            },
        ),
    ),
}

EXPECTED_EXIT = re.compile(r"^(?P<command>[^#]*?)\s+#\s*exit (?P<code>\d+)(:|\s*$)")


def _marker(block: Block, table: dict[str, object]) -> str | None:
    found = [marker for marker in table if marker in block.text]
    assert len(found) <= 1, f"{block.label} matches {found}"
    return found[0] if found else None


def _cases() -> list[object]:
    cases: list[object] = []
    for block in readme_blocks(language="sh"):
        if block.heading == "## Five-minute tour" or _marker(block, NOT_RUN):
            continue
        marker = _marker(block, PLANS)
        for plan in PLANS[marker] if marker else (Plan(),):
            marks = [pytest.mark.postgres] if "postgres" in plan.services else []
            marks += [pytest.mark.redis] if plan.services & {"redis", "redis_tls"} else []
            cases.append(pytest.param(block, plan, id=f"{block.label}: {plan.name}", marks=marks))
    return cases


def test_every_plan_and_exclusion_names_one_block() -> None:
    """A plan or an exclusion whose block was changed or removed would silently stop applying."""
    blocks = readme_blocks(language="sh")
    for marker in [*NOT_RUN, *PLANS]:
        matching = [b.label for b in blocks if marker in b.text]
        assert len(matching) == 1, f"{marker!r} names {matching or 'no block'}"


def checked_exits(script: str) -> str:
    """``cmd   # exit 1: why`` becomes a line that fails unless ``cmd`` exits 1."""
    lines = []
    for number, line in enumerate(script.splitlines(), 1):
        match = EXPECTED_EXIT.match(line)
        if match and not line.rstrip().endswith("\\"):
            code = match["code"]
            line = (
                f'{{ {match["command"]}; }} && rc=0 || rc=$?; [ "$rc" = {code} ] || '
                f'{{ echo "block line {number}: exit $rc, the README says {code}" >&2; exit 1; }}'
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_checked_exits_holds_a_line_to_the_exit_its_comment_names() -> None:
    script = checked_exits("false   # exit 1: it fails\ntrue   # exit 4 when unreachable\n")
    assert subprocess.run(["bash", "-euc", script]).returncode == 0
    assert subprocess.run(["bash", "-euc", checked_exits("true  # exit 3: nope")]).returncode


def _fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(f"<{name}>", value)
    return text


@contextlib.contextmanager
def _tls_redis(tmp_path: Path) -> Iterator[dict[str, str]]:
    import trustme

    from tests.support.redis_servers import free_port, private_server

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port, password = free_port(7140, 7149), "readme-blocks-pa55"
    tls = [
        "--tls-port", str(port), "--tls-cert-file", str(cert_file), "--tls-key-file",
        str(key_file), "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no",
    ]  # fmt: skip
    with private_server(*tls, password=password):
        yield {"tls_port": str(port), "ca_file": str(ca_file), "redis_password": password}


def _services(
    plan: Plan, request: pytest.FixtureRequest, stack: contextlib.ExitStack
) -> dict[str, str]:
    from tests.support.redis_servers import free_port

    values = {"port": str(free_port(18720, 18799))}
    if "postgres" in plan.services:
        url = request.getfixturevalue("postgres_url")
        values |= {"db_url": url, "db_host_path": url.split("@", 1)[1]}
    if "redis" in plan.services:
        values |= {
            "redis_url": request.getfixturevalue("redis_url"),
            "prefix": request.getfixturevalue("redis_prefix"),
        }
    if "redis_tls" in plan.services:
        tmp_path = request.getfixturevalue("tmp_path")
        values |= stack.enter_context(_tls_redis(tmp_path))
    return values


def _clone(tmp_path: Path) -> Path:
    """A directory that shows the repository's files as a clone would, writes kept apart."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for entry in REPO.iterdir():
        if not entry.name.startswith(".") and entry.name != "revoctl.toml":
            (clone / entry.name).symlink_to(entry)
    return clone


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM to the block's process group (by its id), SIGKILL to what outlives 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.communicate(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize(("block", "plan"), _cases())
def test_the_readme_block_runs_as_written(
    block: Block, plan: Plan, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with contextlib.ExitStack() as stack:
        values = _services(plan, request, stack)
        clone, home = _clone(tmp_path), tmp_path / "home"
        home.mkdir()
        for name, text in plan.files.items():
            (clone / name).write_text(text)
        script = block.text
        for old, new in plan.rewrite.items():
            assert old in script, f"{block.label}: {old!r} is no longer in the block"
            script = script.replace(old, _fill(new, values))
        script = "set -euo pipefail\n" + _fill(plan.given, values) + "\n" + checked_exits(script)
        env = clean_environment(
            HOME=str(home),
            PATH=f"{readme_venv() / 'bin'}{os.pathsep}{os.environ['PATH']}",
            TMPDIR=str(tmp_path),
            NO_COLOR="1",
            **{name: _fill(value, values) for name, value in plan.env.items()},
        )
        typed = tmp_path / "typed-at-the-prompt"
        typed.write_text("a-value-typed-at-the-prompt\n")
        with typed.open() as stdin:
            process = subprocess.Popen(
                ["bash", "-c", script],
                cwd=clone,
                env=env,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        if plan.serves:
            url, deadline = _fill(plan.serves, values), time.monotonic() + READY_SECONDS
            while not _ready(url) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.3)
            ready = _ready(url)
            out, err = _stop(process)
            assert ready, f"{block.label}: {url} never answered\n{out[-2000:]}{err[-3000:]}"
            return
        try:
            out, err = process.communicate(timeout=BLOCK_SECONDS)
        finally:
            # The block's own process group, by its id: whatever it left running.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"{block.label}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]


def test_the_every_key_block_is_the_defaults_and_writes_nowhere_else(tmp_path: Path) -> None:
    """The "Every key" block pasted as ``./revoctl.toml`` is a valid configuration that writes
    nothing outside ``REVOCTL_HOME`` (a URL naming ``<REVOCTL_HOME>`` made a directory of that
    name), and each key it shows has the default it shows; each default is shown, but for
    those the block says in a comment (the database URL, rules) or cannot have a value for."""
    text = next(b.text for b in readme_blocks(language="toml") if "[secrets.azure]" in b.text)
    work, home = tmp_path / "work", tmp_path / "state"
    work.mkdir()
    env = clean_environment(HOME=str(tmp_path), REVOCTL_HOME=str(home), NO_COLOR="1")
    revoctl = str(readme_venv() / "bin" / "revoctl")
    defaults = subprocess.run(
        [revoctl, "config", "show", "-o", "json"], cwd=work, env=env, capture_output=True, text=True
    )
    (work / "revoctl.toml").write_text(text)
    pinged = subprocess.run(
        [revoctl, "db", "ping"], cwd=work, env=env, capture_output=True, text=True
    )
    assert pinged.returncode == 0, pinged.stderr
    assert sorted(p.name for p in work.iterdir()) == ["revoctl.toml"]
    default = {e["key"]: e["value"] for e in json.loads(defaults.stdout)["settings"]}
    shown = flatten(tomllib.loads(text))
    drift = {k: (v, default[k]) for k, v in shown.items() if k in default and default[k] != v}
    assert not drift, f"README value, real default: {drift}"
    not_shown = {
        "database.url": "a comment: it depends on REVOCTL_HOME",
        "limits.rules": "a comment: a list of tables, none by default",
        "secrets.rotation.rules": "a comment: a list of tables, none by default",
        "breakers.defaults.name": "each breaker's own name, filled in per breaker",
        "breakers.services": "shown by an example, [breakers.services.openai_api]",
        "tiers": "shown by an example, [tiers.free], with each key's default",
    }
    missing = [k for k in default if k not in shown and k not in not_shown]
    missing = [k for k in missing if not k.startswith(("providers", "models"))]
    assert not missing, f"keys with a default the block does not show: {missing}"


def _shown_json(block: Block) -> list[str]:
    """The JSON a block shows: all of a json block, or what follows a ``$ ... -o json`` line."""
    if block.language == "json":
        return block.text.splitlines()
    lines = block.text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("$ ")), None)
    if start is None or not re.search(r" -o json\b", lines[start]):
        return []
    shown = []
    for line in lines[start + 1 :]:
        if line.startswith(("$ ", "error:")):
            break
        shown.append(line)
    return shown


def test_json_is_shown_as_printed() -> None:
    """Commands print JSON indented, one key a line; so does the README, or a reader who
    greps its output for a line the README shows finds nothing."""
    blocks = [b for b in readme_blocks() if b.language in ("", "json")]
    shown = {b.label: lines for b in blocks if (lines := _shown_json(b))}
    assert len(shown) >= 3
    for label, lines in shown.items():
        assert lines[0] in ("{", "["), f"{label} starts {lines[0]!r}"
        crowded = [line for line in lines if line.count('": ') > 1]
        assert not crowded, f"{label} shows several keys on a line: {crowded}"


def _db_pool_shown(backend_line: str) -> list[str]:
    """The lines of the README's ``db pool`` example that are not data rows: its first
    line, the SQLite note where shown, and the header of each table."""
    block = next(
        b
        for b in readme_blocks(language="")
        if b.text.startswith("$ revoctl db pool\n") and (backend_line in b.text)
    )
    return _frame(block.text.splitlines()[1:])


def _frame(lines: list[str]) -> list[str]:
    heads = ("configured:", "SQLite", "APPLICATION_NAME", "INSTANCE", "no open connections")
    return [" ".join(line.split()) for line in lines if line.startswith(heads)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_pool_prints_what_the_readme_shows(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """With a runtime running, ``db pool``'s table of connections and table of instances
    have the README's columns, on PostgreSQL and on SQLite."""
    from tests.support.redis_servers import free_port

    env = clean_environment(
        HOME=str(tmp_path), REVOCTL_HOME=str(tmp_path / "state"), NO_COLOR="1",
        REVOCTL_GATEWAY__AUTH="none",
    )  # fmt: skip
    if backend == "postgresql":
        env["REVOCTL_DATABASE__URL"] = request.getfixturevalue("postgres_url")
    revoctl = str(readme_venv() / "bin" / "revoctl")

    def run(*args: str) -> str:
        done = subprocess.run([revoctl, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("db", "migrate")
    port = free_port(18720, 18799)
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [revoctl, "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not _ready(f"http://127.0.0.1:{port}/health/ready"):
            assert server.poll() is None and time.monotonic() < deadline, "serve never got ready"
            time.sleep(0.3)
        while "INSTANCE" not in (printed := run("db", "pool")):
            assert time.monotonic() < deadline, f"no instance reported:\n{printed}"
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
    shown = _db_pool_shown("SQLite has no" if backend == "sqlite" else "active")
    assert _frame(printed.splitlines()) == shown, printed


def test_the_many_teams_configuration_loads(tmp_path: Path) -> None:
    """The worked configuration of "Many teams" is valid as shown: every rule, model and tier
    it names exists, and its tiers read back as written."""
    text = _toml_under("## Many teams")
    (tmp_path / "revoctl.toml").write_text(text)
    env = clean_environment(HOME=str(tmp_path), REVOCTL_HOME=str(tmp_path / "state"))
    shown = subprocess.run(
        [str(readme_venv() / "bin" / "revoctl"), "config", "show", "-o", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    settings = {e["key"]: e["value"] for e in json.loads(shown.stdout)["settings"]}
    assert settings["tiers.free.budget"] == 5.0
    assert settings["tiers.free.models"] == ["gpt-4o-mini"]
    assert settings["tiers.pro.max_parallel_requests"] == 32


def test_the_deployments_and_routing_configuration_loads(tmp_path: Path) -> None:
    """The worked configuration of "Deployments and routing" is valid as shown: every provider
    its deployments name exists, and its routing, retries and deployments read back as written."""
    text = _toml_under("## Deployments and routing")
    (tmp_path / "revoctl.toml").write_text(text)
    env = clean_environment(HOME=str(tmp_path), REVOCTL_HOME=str(tmp_path / "state"))
    shown = subprocess.run(
        [str(readme_venv() / "bin" / "revoctl"), "config", "show", "-o", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    settings = {e["key"]: e["value"] for e in json.loads(shown.stdout)["settings"]}
    assert settings["models.gpt-4o.routing"] == "least_busy"
    assert settings["models.gpt-4o.retries"] == 2
    deployments = settings["models.gpt-4o.deployments"]
    assert [d["provider"] for d in deployments] == ["azure-east", "azure-west", "openai"]
    assert [d.get("breaker", "") for d in deployments] == ["azure_east", "azure_west", ""]
    assert settings["models.gpt-4o.fallbacks"] == ["gpt-4o-mini"]

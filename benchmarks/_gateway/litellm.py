"""LiteLLM's proxy as a benchmark case, with limits comparable to revoctl's where they can
run here.

``litellm[proxy]`` pinned (``--litellm-version``), installed on first use into a venv of its
own (``--litellm-venv``; never the project's). One model pointing at the stand-in
(``openai/...`` with ``api_base``), a master key (it refuses to start without one), its
price map read locally, no database: its virtual keys, their budgets and their parallel
limits need PostgreSQL and a Prisma engine it downloads at run time, which cannot work here.

With ``redis_url`` (the benchmark's own Redis) the deployment has router-level limits, the
closest it has to revoctl's request and token rules: ``rpm`` and ``tpm`` on the deployment,
``usage-based-routing-v2`` (which counts both per minute and refuses a deployment over
either), its counters in that Redis. They differ in kind: LiteLLM counts in a local cache
and writes its increments to Redis in batches (``should_batch_redis_writes``), so instances
share a count that lags, where revoctl decides each request on the store, atomically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .client import MODEL, Target
from .servers import PROVIDER_KEY, free_port, log_tail, stop, wait_until_up

LITELLM_VERSION = "1.106.12"
LITELLM_MASTER_KEY = "sk-litellm-bench-" + "0" * 32
RPM = 10_000_000
TPM = 1_000_000_000
"""The deployment's limits: the same as revoctl's rules, never reached in a run."""


def ensure_litellm(venv: Path, version: str) -> Path:
    """``litellm[proxy]==version`` in ``venv`` (created on first use); its ``litellm``.

    :raises RuntimeError: it cannot be installed (pip's reason).
    """
    executable = venv / "bin" / "litellm"
    python = venv / "bin" / "python"
    if executable.exists():
        found = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        )
        if found.stdout.strip() == version:
            return executable
    print(f"installing litellm[proxy]=={version} into {venv} (once) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={version}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            reasons = [
                line
                for line in done.stderr.splitlines()
                if line.startswith("ERROR") and "Ignored the following" not in line
            ]
            raise RuntimeError(f"{' '.join(step[-2:])} failed: {' '.join(reasons)[:400]}")
    return executable


def litellm_config(url: str, redis_url: str | None) -> str:
    limits = f"      rpm: {RPM}\n      tpm: {TPM}\n" if redis_url else ""
    router = (
        f"router_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_url: {redis_url}\n"
        if redis_url
        else ""
    )
    return f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {url}/v1
      api_key: {PROVIDER_KEY}
{limits}{router}general_settings:
  master_key: {LITELLM_MASTER_KEY}
litellm_settings:
  telemetry: false
"""


@contextlib.contextmanager
def litellm_proxy(
    executable: Path, version: str, url: str, workers: int, redis_url: str | None
) -> Iterator[Target]:
    """``litellm --config`` in front of the stand-in: one model, no database, a master key;
    with ``redis_url``, the deployment's rpm/tpm limits counted there."""
    workdir = Path(tempfile.mkdtemp(prefix="litellm-gwbench-"))
    (workdir / "config.yaml").write_text(litellm_config(url, redis_url))
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of its price list from the internet
        "LITELLM_TELEMETRY": "False",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "LITELLM_MASTER_KEY"):
        env.pop(name, None)
    port = free_port()
    argv = [str(executable), "--config", str(workdir / "config.yaml")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--num_workers", str(workers)]
    process = None
    try:
        with (workdir / "litellm.log").open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until_up(port, "/health/liveliness", process, 120)
        except RuntimeError as exc:
            raise RuntimeError(f"litellm: {exc}\n{log_tail(workdir / 'litellm.log')}") from None
        headers = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
        name = f"LiteLLM {version}" + (", rpm/tpm on Redis" if redis_url else "")
        yield Target(
            name, port, headers, "x-litellm-overhead-duration-ms", (process.pid,),
            up_since=time.monotonic(),
        )  # fmt: skip
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)

"""deploy/: the Kubernetes manifests validate against Kubernetes' own schemas (the oldest
version supported here and the newest kubernetes-validate ships), and agree with each other,
with the Dockerfile and with revoctl itself: the probes' routes answer on a gateway run with the
ConfigMap's configuration and the Secret's settings, the migration Job's command migrates, and
the grace period covers the preStop pause and revoctl's drain."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest

from revoctl.config import load_config
from revoctl.runtime.server import EXIT_GRACE_SECONDS
from tests.support.deploy import (
    KUBE,
    NOT_IN_KUSTOMIZATION,
    Manifest,
    container,
    dockerfile,
    dockerfile_final_stage,
    documents,
    exec_form,
    kustomize_by_reading,
    kustomize_with_kubectl,
    manifest_files,
    one,
    pod_spec,
)
from tests.support.fleet import free_port

OLDEST_KUBERNETES = "1.31.0"
VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
READY_SECONDS = 60
CANARY = "deploy-canary-5f0c1e9a"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_every_manifest_validates(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_rejects_a_broken_deployment() -> None:
    """The check above can fail: a misspelt field and a port given as text are refused."""
    deployment = one("Deployment")
    misspelt = copy.deepcopy(deployment)
    container(misspelt)["readinesProbe"] = container(misspelt).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, VERSIONS[-1], strict=True)
    bad_port = copy.deepcopy(deployment)
    container(bad_port)["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_port, OLDEST_KUBERNETES, strict=True)


def test_the_kustomization_builds_the_gateway_and_nothing_else() -> None:
    listed = set(documents(KUBE / "kustomization.yaml")[0]["resources"])
    assert listed | NOT_IN_KUSTOMIZATION == {path.name for path in KUBE.glob("*.yaml")}
    assert not listed & NOT_IN_KUSTOMIZATION
    built = kustomize_by_reading()
    assert sorted(doc["kind"] for doc in built) == sorted(
        [
            "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "Service", "ServiceAccount",
        ]
    )  # fmt: skip
    by_kubectl = kustomize_with_kubectl()
    if by_kubectl is not None:  # kubectl's build is what `kubectl apply -k` sends

        def key(doc: Manifest) -> str:
            return json.dumps(doc, sort_keys=True)

        assert sorted(map(key, by_kubectl)) == sorted(map(key, built))
    for doc in built:
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_names_and_selectors_agree() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service, pdb, hpa = one("Service"), one("PodDisruptionBudget"), one("HorizontalPodAutoscaler")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["maxUnavailable"] == 1
    assert container(deployment)["resources"]["requests"]["cpu"]  # the HPA's utilization base
    ports = {port["name"]: port["containerPort"] for port in container(deployment)["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    (configmap,) = (v["configMap"] for v in spec["volumes"] if "configMap" in v)
    assert configmap["name"] == one("ConfigMap")["metadata"]["name"]
    (secret_ref,) = container(deployment)["envFrom"]
    assert secret_ref["secretRef"]["name"] == one("Secret")["metadata"]["name"]


def test_the_deployment_runs_the_image_as_built() -> None:
    """Command, port, user, state directory and health check: the manifests and the
    Dockerfile say the same."""
    final = dockerfile_final_stage()
    (cmd,) = (exec_form(args) for word, args in final if word == "CMD")
    (user,) = (args for word, args in final if word == "USER")
    (expose,) = (args for word, args in final if word == "EXPOSE")
    (healthcheck,) = (args for word, args in final if word == "HEALTHCHECK")
    env = " ".join(args for word, args in final if word == "ENV")
    gateway = container(one("Deployment"))
    assert gateway["args"] == cmd == ["revoctl", "serve", "--host", "0.0.0.0", "--port", expose]
    assert [port["containerPort"] for port in gateway["ports"]] == [int(expose)]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gateway[probe]["httpGet"]["port"] == gateway["ports"][0]["name"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    check = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert check[0] == "python" and f"http://127.0.0.1:{expose}/health/live" in check[-1]
    uid, gid = (int(part) for part in user.split(":"))
    security = pod_spec(one("Deployment"))["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid) and uid != 0
    home = {e["name"]: e["value"] for e in gateway["env"]}["REVOCTL_HOME"]
    assert f"REVOCTL_HOME={home}" in env
    instructions = dockerfile()
    assert instructions[0] == ("ARG", "BASE=python:3.11-slim")
    assert sum(word == "FROM" for word, _ in instructions) == 2  # build, then run
    installs = " ".join(args for word, args in instructions if word == "RUN")
    assert "--require-hashes -r requirements/demo.txt" in installs


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_as_non_root_on_a_read_only_root(kind: str) -> None:
    doc = one(kind)
    spec, main = pod_spec(doc), container(doc)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e["value"] for e in main["env"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The one writable place is an emptyDir (0777); REVOCTL_HOME is a directory inside it,
    # created 0700 by revoctl, which refuses a state directory that others may write to.
    home = Path(env["REVOCTL_HOME"])
    assert str(home) not in mounts and "emptyDir" in volumes[mounts[str(home.parent)]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    config = Path(env["REVOCTL_CONFIG"])
    items = volumes[mounts[str(config.parent)]]["configMap"]["items"]
    assert items == [{"key": "revoctl.toml", "path": config.name}]


def _configmap_file(tmp_path: Path) -> Path:
    path = tmp_path / "revoctl.toml"
    path.write_text(one("ConfigMap")["data"]["revoctl.toml"])
    return path


def test_the_grace_period_covers_the_pre_stop_pause_and_the_drain(tmp_path: Path) -> None:
    """SIGKILL comes terminationGracePeriodSeconds after the pod starts stopping, preStop
    included: the pause and revoctl's whole drain (with its last grace) fit inside it."""
    deployment = one("Deployment")
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = load_config(_configmap_file(tmp_path)).settings.gateway.drain_seconds
    pause = float(pre_stop[1])
    assert pause >= 5  # endpoints' removal reaches the load balancers in a few seconds
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert pause + drain + EXIT_GRACE_SECONDS < grace


def test_the_migration_job_runs_the_release_image_on_the_same_settings() -> None:
    job, gateway = container(one("Job")), container(one("Deployment"))
    assert job["args"] == ["revoctl", "db", "migrate"]
    assert job["image"] == gateway["image"]
    assert (job["env"], job["envFrom"]) == (gateway["env"], gateway["envFrom"])
    assert one("Job")["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def _secret_settings(**replace: str) -> dict[str, str]:
    """The example Secret's variables, each CHANGE-ME placeholder given a value of the test's."""
    data: dict[str, str] = one("Secret")["stringData"]
    return {name: replace.get(name, value) for name, value in data.items()}


def test_the_configmap_loads_with_the_secrets_settings(cli: Any, tmp_path: Path) -> None:
    """Every key of the Secret is a setting revoctl takes from the environment (an unknown one
    is exit 2), laid over the ConfigMap's file; no credential is printed."""
    config = _configmap_file(tmp_path)
    settings = _secret_settings()
    assert all(name.startswith("REVOCTL_") for name in settings)
    settings = {name: value.replace("CHANGE-ME", CANARY) for name, value in settings.items()}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        shown = cli("--config", str(config), "config", "show", "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    assert CANARY not in shown.stdout + shown.stderr
    sources = {row["origin"] for row in json.loads(shown.stdout)["settings"]}
    assert {f"env {name}" for name in settings} <= sources


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_the_manifests_migrate_then_serve_their_probes(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The Job's command, then the Deployment's, with the ConfigMap's file and the Secret's
    variables pointed at the servers here: the migration succeeds and both probes' routes
    answer 200 (on loopback and a free port instead of 0.0.0.0:8080)."""
    job, gateway = container(one("Job")), container(one("Deployment"))
    env = {
        **os.environ,
        **{e["name"]: e["value"] for e in gateway["env"]},
        **_secret_settings(
            REVOCTL_DATABASE__URL=postgres_url,
            REVOCTL_REDIS__URL=redis_url,
            REVOCTL_GATEWAY__ADMIN_KEY=CANARY,
            REVOCTL_PROVIDERS__OPENAI__API_KEY=CANARY,
        ),
        "REVOCTL_CONFIG": str(_configmap_file(tmp_path)),
        "REVOCTL_HOME": str(tmp_path / "state" / "home"),
        "REVOCTL_LIMITS__KEY_PREFIX": f"{redis_prefix}rl:",
        "REVOCTL_BREAKERS__KEY_PREFIX": f"{redis_prefix}cb:",
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "revoctl", *job["args"][1:]],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    args = gateway["args"][1:]
    port = free_port()
    args[args.index("--host") + 1], args[args.index("--port") + 1] = "127.0.0.1", str(port)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "revoctl", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        probes = {
            name: gateway[name]["httpGet"]["path"] for name in ("livenessProbe", "readinessProbe")
        }
        answers = {name: _wait_for_200(f"http://127.0.0.1:{port}{path}", server, log)
                   for name, path in probes.items()}  # fmt: skip
        assert answers == {"livenessProbe": 200, "readinessProbe": 200}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # uvicorn ends by raising the signal it stopped on again, after a clean shutdown
    assert server.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert "Application shutdown complete" in log.read_text()
    assert CANARY not in log.read_text() + migrated.stdout + migrated.stderr


def _wait_for_200(url: str, server: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + READY_SECONDS
    status = 0
    while time.monotonic() < deadline:
        assert server.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
        try:
            status = httpx.get(url, timeout=2).status_code
        except httpx.HTTPError:
            status = 0
        if status == 200:
            return status
        time.sleep(0.2)
    return status

"""Reading ``deploy/``: the Dockerfile's instructions, the Kubernetes manifests, and what the
kustomization builds from them (``kubectl kustomize`` where kubectl is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.readme import REPO

DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
NOT_IN_KUSTOMIZATION = frozenset({"migrate-job.yaml", "secret.example.yaml", "kustomization.yaml"})
"""Applied apart: the migration Job before each rollout; the Secret is made by hand or synced."""

Manifest = dict[str, Any]


def documents(path: Path) -> list[Manifest]:
    """Every YAML document of ``path``, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    """Every manifest in deploy/kubernetes/, the kustomization aside."""
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def one(kind: str, docs: list[Manifest] | None = None) -> Manifest:
    """The one object of ``kind`` among ``docs`` (default: every manifest file)."""
    if docs is None:
        docs = [doc for path in manifest_files() for doc in documents(path)]
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def kustomize_by_reading() -> list[Manifest]:
    """What the kustomization lists, read file by file, with its ``images`` applied: what
    ``kubectl kustomize`` gives for this kustomization (the test compares the two)."""
    kustomization = documents(KUBE / "kustomization.yaml")[0]
    images = {image["name"]: image for image in kustomization.get("images", [])}
    docs = [doc for name in kustomization["resources"] for doc in documents(KUBE / name)]
    for doc in docs:
        for container in _containers(doc):
            image = images.get(container["image"].split(":")[0])
            if image is not None:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    return docs


def kustomize_with_kubectl() -> list[Manifest] | None:
    """``kubectl kustomize deploy/kubernetes``, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    built = subprocess.run(
        [kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60, check=True
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def _containers(doc: Manifest) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


def pod_spec(doc: Manifest) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def container(doc: Manifest) -> dict[str, Any]:
    (only,) = _containers(doc)
    return only


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, rest = pending.partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: the image that runs."""
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    """A CMD or HEALTHCHECK CMD in exec (JSON) form."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value), arguments
    return value

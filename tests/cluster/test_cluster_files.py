"""The cluster files: ray_config.yaml against the Ray cluster launcher's own schema, the KubeRay manifests for
the fields KubeRay and Kubernetes require."""

import json
import os
import re
import shlex
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

from cluster.submit import JOBS

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "cluster" / "kuberay"


def test_ray_config_validates_against_the_launcher_schema():
    config = yaml.safe_load((ROOT / "ray_config.yaml").read_text())
    schema = json.loads((Path(os.path.dirname(ray.autoscaler.__file__)) / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))  # the launcher's own fill-out and checks, as `ray up` runs them
    types = config["available_node_types"]
    assert config["head_node_type"] in types and types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert {"cpu_worker", "gpu_worker"} <= set(types)
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g")
    assert sum(t.get("max_workers", 0) for t in types.values()) <= config["max_workers"]
    assert any("pip install" in c and "fsnet" in c for c in config["setup_commands"])
    text = (ROOT / "ray_config.yaml").read_text()
    assert not re.search(r"(?i)(secret_access_key|access_key_id)\s*[:=]\s*\S", text)  # no credential values in the file


def load(name):
    return yaml.safe_load((KUBERAY / name).read_text())


def containers(template):
    spec = template["spec"]
    assert spec["containers"], "a pod template needs containers"
    for c in spec["containers"]:
        assert c["name"] and c["image"]
    return spec["containers"]


def test_raycluster_has_head_cpu_and_gpu_groups():
    rc = load("raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster" and rc["metadata"]["name"] == "fsnet"
    spec = rc["spec"]
    assert spec["rayVersion"] == ray.__version__  # the image's Ray must be the one fsnet pins
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head and any(
        p["containerPort"] == 8265 for p in containers(head["template"])[0]["ports"]
    )
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert "rayStartParams" in g and g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        containers(g["template"])
    assert containers(groups["gpu"]["template"])[0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for c in containers(head["template"]) + containers(groups["cpu"]["template"]):
        assert {"secretRef": {"name": "fsnet-s3"}} in c["envFrom"]  # credentials from a Secret, not the manifest


def test_rayjobs_run_fsnet_jobs_on_the_cluster():
    for job in ("train", "index", "evaluate"):
        rj = load(f"rayjob-{job}.yaml")
        assert rj["apiVersion"] == "ray.io/v1" and rj["kind"] == "RayJob"
        spec = rj["spec"]
        words = shlex.split(spec["entrypoint"])
        assert words[:3] == ["python", "-m", f"jobs.{job}"] and (ROOT / "jobs" / f"{job}.py").exists()
        assert spec["clusterSelector"] == {"ray.io/cluster": "fsnet"}
        assert "working_dir" in yaml.safe_load(spec["runtimeEnvYAML"])


def test_cronjob_submits_reindex_nightly():
    cj = load("cronjob-reindex.yaml")
    assert cj["apiVersion"] == "batch/v1" and cj["kind"] == "CronJob"
    assert len(cj["spec"]["schedule"].split()) == 5 and cj["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["restartPolicy"] in ("Never", "OnFailure")
    command = containers(pod)[0]["command"]
    assert command[:3] == ["fsnet", "submit", "reindex"] and "reindex" in JOBS and "--wait" in command
    assert "--catalog" in command[command.index("--") :] and "--index" in command[command.index("--") :]

"""Cluster configs stay valid and in sync with the code: ray-cluster.yaml against Ray's own validator, the
KubeRay manifests, runtime env and documented commands against the jobs' real CLIs, and cluster/submit.py
against a local two-node `ray start` cluster (token auth, custom-resource placement)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
MANIFESTS = ["cluster/raycluster.yaml", "cluster/rayjob-generate.yaml", "cluster/rayjob-train.yaml"]
# Where users copy commands from: every `jobs/*.py` command in these files is parsed by the job's own CLI.
COMMAND_SOURCES = ["ray-cluster.yaml", "cluster/submit.py", "README.md", *sorted(
    str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")), *MANIFESTS]


def load_submit() -> Any:
    spec = importlib.util.spec_from_file_location("llmgan_cluster_submit", REPO / "cluster" / "submit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


submit = load_submit()


# ---------------------------------------------------------------- ray-cluster.yaml


def test_ray_cluster_yaml_passes_rays_own_validator() -> None:
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs before touching AWS

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    offered = {name for t in types.values() for name in t["resources"]}
    assert {"gan_gpu", "lm_gpu"} <= offered
    for name, node_type in types.items():
        if node_type is head:
            continue
        assert node_type["resources"]["GPU"] >= 1 and node_type["max_workers"] >= node_type["min_workers"]
        assert node_type["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name
        assert "IamInstanceProfile" in node_type["node_config"], name  # S3 through the instance profile
    # The validator is really consulted: a fractional node resource is rejected by its schema.
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_gan"]["resources"]["gan_gpu"] = 0.5
    with pytest.raises(ValidationError):
        validate_config(prepare_config(broken))


def test_versions_agree_with_the_installed_ray() -> None:
    import ray

    assert f'"ray[default,data,train]=={ray.__version__}"' in (REPO / "ray-cluster.yaml").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-" in (REPO / "cluster" / "Dockerfile").read_text()
    for path in MANIFESTS:
        assert cluster_spec(yaml.safe_load((REPO / path).read_text()))["rayVersion"] == ray.__version__, path


def test_no_credentials_in_any_config() -> None:
    for path in [REPO / "ray-cluster.yaml", *sorted(p for p in (REPO / "cluster").iterdir() if p.is_file())]:
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
        assert not re.search(r"(?i)aws_secret_access_key\s*[:=]\s*\S", text), path


# ---------------------------------------------------------------- KubeRay manifests


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def custom_resources(group: dict[str, Any]) -> dict[str, float]:
    raw = group.get("rayStartParams", {}).get("resources")
    return json.loads(json.loads(raw)) if raw else {}  # KubeRay wants a quoted JSON string


@pytest.mark.parametrize("path", MANIFESTS)
def test_kuberay_manifest_is_well_formed(path: str) -> None:
    docs = list(yaml.safe_load_all((REPO / path).read_text()))
    assert len(docs) == 1 and docs[0]["apiVersion"] == "ray.io/v1" and docs[0]["kind"] in ("RayCluster", "RayJob")
    spec = cluster_spec(docs[0])
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in groups(spec):
        for container in group["template"]["spec"]["containers"]:
            assert container["image"]
            limits = container["resources"]["limits"]
            assert limits == container["resources"]["requests"]
            if group is not spec["headGroupSpec"]:
                assert int(limits["nvidia.com/gpu"]) >= 1, group["groupName"]
            for var in container.get("env", []):
                if submit.looks_secret(var["name"]):  # secrets only by reference, never a literal value
                    assert "value" not in var and "secretKeyRef" in var["valueFrom"], var["name"]
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    if docs[0]["kind"] == "RayJob":
        env = yaml.safe_load(docs[0]["spec"]["runtimeEnvYAML"])
        assert env["working_dir"] and not any(submit.looks_secret(k) for k in env["env_vars"])


def test_runtime_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and ".venv/" in env["excludes"]
    assert not any(submit.looks_secret(k) for k in env["env_vars"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.internal:9000")
    monkeypatch.setenv("LLMGAN_EXTRA", "x")
    merged = submit.runtime_env(REPO / "cluster" / "runtime_env.yaml", ["LLMGAN_EXTRA"])
    assert merged["env_vars"]["AWS_ENDPOINT_URL_S3"] == "http://minio.internal:9000"
    assert merged["env_vars"]["LLMGAN_EXTRA"] == "x"
    assert "AWS_SECRET_ACCESS_KEY" not in merged["env_vars"]  # set by the test session, never forwarded
    with pytest.raises(submit.SubmitError, match="credential"):
        submit.runtime_env(REPO / "cluster" / "runtime_env.yaml", ["AWS_SECRET_ACCESS_KEY"])


# ---------------------------------------------------------------- flags in sync with the code


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(source file, entry point, arguments) for every job command in the user-facing files: `jobs/<name>.py
    ARGS`, `llmgan generate|train ARGS` (the same functions) and `cluster/submit.py <job> ... -- ARGS`."""
    found = []
    for source in COMMAND_SOURCES:
        path = REPO / source
        if not path.exists():
            continue
        text = submit.__doc__ if source == "cluster/submit.py" else path.read_text()
        if source.startswith("cluster/ray"):
            lines = [yaml.safe_load(text)["spec"].get("entrypoint", "")]
        else:  # shell lines in comments, docstrings and Markdown code blocks, joined over `\` continuations
            if source.endswith(".md"):  # commands live in fenced blocks; inline code in prose is a mention
                text = "\n".join(re.findall(r"(?ms)^```[^\n]*\n(.*?)^```", text))
            lines = re.sub(r"\\\n[ \t#]*", " ", text).splitlines()
        for line in lines:
            if m := re.search(r"cluster/submit\.py (\w+)\b.*? -- (.*)", line):
                entry, rest = submit.ENTRY_POINTS[m.group(1)], m.group(2)
            elif m := re.search(r"\b(jobs/\w+\.py)\b(.*)", line):
                entry, rest = m.group(1), m.group(2)
            elif m := re.search(r"\bllmgan (generate|train)(?![\w-])(.*)", line):
                entry, rest = submit.ENTRY_POINTS[m.group(1)], m.group(2)
            else:
                continue
            if entry not in submit.ENTRY_POINTS.values():
                continue
            try:
                args = shlex.split(rest.split("`")[0], comments=True)
            except ValueError as exc:
                raise AssertionError(f"{source}: cannot split {line!r}: {exc}") from None
            if args:  # no arguments: a mention in prose, not a command
                found.append((source, entry, args))
    return found


def test_commands_are_found_in_every_source() -> None:
    sources = {source for source, _, _ in documented_commands()}
    assert {"ray-cluster.yaml", "cluster/submit.py", "cluster/rayjob-generate.yaml", "cluster/rayjob-train.yaml"} <= sources


@pytest.mark.parametrize("entry", sorted(submit.ENTRY_POINTS.values()))
def test_documented_commands_parse_with_the_jobs_cli(entry: str) -> None:
    commands = [(src, args) for src, e, args in documented_commands() if e == entry]
    assert commands, f"no documented command for {entry}"
    if not (REPO / entry).exists():
        pytest.skip(f"{entry} is not in this checkout yet")
    for source, args in commands:
        try:
            submit.check_job_args(entry, args)
        except submit.SubmitError as exc:  # names the flag that no longer exists
            raise AssertionError(f"{source}: {exc}") from None


def test_flag_check_fails_on_a_flag_that_does_not_exist() -> None:
    assert {"--generator-resources", "--expander-resources", "--no-expand"} <= submit.job_flags("jobs/generate.py")
    with pytest.raises(submit.SubmitError, match="--no-such-flag"):
        submit.check_job_args("jobs/generate.py", ["prompts.parquet", "--no-such-flag", "1"])


def test_placement_resources_in_commands_exist_on_the_cluster() -> None:
    ray_up = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())["available_node_types"]
    offered_by = {"ray-cluster.yaml": {r for t in ray_up.values() for r in t["resources"]}}
    for path in MANIFESTS:
        spec = cluster_spec(yaml.safe_load((REPO / path).read_text()))
        offered_by[path] = {r for g in groups(spec) for r in custom_resources(g)}
    checked = 0
    for source, _, args in documented_commands():
        offered = offered_by.get(source, offered_by["ray-cluster.yaml"])  # docs target the ray up cluster
        for flag in ("--generator-resources", "--expander-resources"):
            if flag in args:
                assert set(json.loads(args[args.index(flag) + 1])) <= offered, (source, flag)
                checked += 1
    assert checked >= 4


# ---------------------------------------------------------------- submit.py against a real local cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
    return subprocess.Popen([RAY, "start", "--block", *ports, *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:  # only these nodes' process groups; `ray stop` would stop every Ray on the machine
        os.killpg(proc.pid, 15)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def test_submit_script_against_a_local_cluster(tmp_path: Path, tiny_ckpt: str) -> None:
    prompts = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [f"prompt {i}" for i in range(4)], "n": pa.array([2] * 4, pa.int32())}),
                   prompts)
    out = tmp_path / "out"
    token = tmp_path / "token"
    token.write_text(uuid.uuid4().hex)  # this cluster's own token, apart from ~/.ray/auth_token
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay < 108 bytes
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    node_env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), PATH=path)
    # Two nodes standing for the two GPU node types: the caption LM stage must land on the lm_gpu node,
    # the GAN stage on the gan_gpu node.
    head = start_node(["--head", f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=1",
                       '--resources={"lm_gpu": 1}', "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                       f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}"], node_env)
    worker = None
    address = f"http://127.0.0.1:{dash}"
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    client_env.update(PATH=path, HOME=str(tmp_path))  # no ~/.ray/auth_token: the token comes from --token-file
    try:
        worker = start_node([f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"gan_gpu": 1}'],
                            node_env)
        base = [sys.executable, str(REPO / "cluster" / "submit.py"), "generate", "--address", address]
        job = ["--", str(prompts), "--out", str(out), "--ckpt", tiny_ckpt, "--no-expand", "--shard-size", "4",
               "--expander-resources", '{"lm_gpu": 1}', "--generator-resources", '{"gan_gpu": 1}']
        # Straight after start: submit.py waits for the job API and the job agent itself.
        result = subprocess.run([*base, "--token-file", str(token), *job], env=client_env, capture_output=True,
                                text=True, timeout=600, cwd=tmp_path)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "8 images in 2 shards" in result.stdout
        assert json.loads((out / "_SUCCESS.json").read_text())["images"] == 8

        nodes = subprocess.run([RAY, "list", "nodes", "--address", address, "--format", "json"],
                               env=dict(client_env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token)),
                               capture_output=True, text=True, timeout=120)
        assert nodes.returncode == 0, nodes.stderr[-2000:]
        node_of = {r: n["node_id"] for n in json.loads(nodes.stdout) for r in n["resources_total"]
                   if r in ("lm_gpu", "gan_gpu")}
        for stats_file in sorted((out / "shards").glob("*.stats.json")):
            workers = json.loads(stats_file.read_text())["workers"]
            assert workers["expand"]["node"] == node_of["lm_gpu"]
            assert workers["generate"]["node"] == node_of["gan_gpu"]

        # Without the token: one line saying what to do, not a traceback.
        denied = subprocess.run([*base, "--cluster-timeout", "30", *job], env=client_env, capture_output=True,
                                text=True, timeout=120, cwd=tmp_path)
        assert denied.returncode == 3 and "auth token" in denied.stderr and "Traceback" not in denied.stderr
    finally:
        stop([proc for proc in (worker, head) if proc is not None])
        shutil.rmtree(temp_dir, ignore_errors=True)

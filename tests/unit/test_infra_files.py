"""The scale-out files of infra/: the compose file, the GPU image, the Kubernetes work-pool template and the
one-worker-per-GPU script. No Docker engine or cluster here: the files are parsed and checked, the template
validated and rendered by Prefect's own code, the script run with --dry-run."""

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.templating import apply_values

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "docker-compose.yml"
DOCKERFILE = INFRA / "Dockerfile.gpu"
K8S_TEMPLATE = INFRA / "k8s" / "gpu-work-pool.json"
SCRIPT = INFRA / "start-gpu-workers.sh"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str | None]:
    """A service's environment, from compose's map or list form (a bare name in a list is passed through: None)."""
    env = service.get("environment", {})
    if isinstance(env, dict):
        return env
    return {name: value if sep else None for name, sep, value in (item.partition("=") for item in env)}


def test_compose_parses_into_postgres_server_and_gpu_worker():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "worker-gpu"}
    postgres, server, worker = services["postgres"], services["prefect-server"], services["worker-gpu"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["volumes"][0].split(":")[0] in compose["volumes"]  # a named volume
    assert server["image"] == "prefecthq/prefect:3.9.1-python3.11"
    assert " ".join(server["command"]) == "prefect server start --host 0.0.0.0"
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/api/health" in " ".join(server["healthcheck"]["test"])
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"


def test_compose_server_is_published_on_loopback_only():
    services = _compose()["services"]
    assert services["prefect-server"]["ports"] == ["127.0.0.1:4200:4200"]
    assert [name for name, service in services.items() if service.get("ports")] == ["prefect-server"]


def test_compose_database_url_is_asyncpg_on_the_postgres_service():
    url = _environment(_compose()["services"]["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert re.fullmatch(r"postgresql\+asyncpg://prefect:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432/prefect", url)


def test_compose_writes_no_password_or_secret():
    services = _compose()["services"]
    assert _environment(services["postgres"])["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    for name, service in services.items():
        for key, value in _environment(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", key):  # passed through from the host, or the variable
                assert value is None or value.startswith("${POSTGRES_PASSWORD:?"), (name, key, value)
    # no URL with a literal password (user:password@host) anywhere, comments included
    assert re.search(r"://[^:/\s]+:(?!\$\{)[^@\s]+@", COMPOSE.read_text()) is None


def test_compose_worker_reserves_an_nvidia_gpu_and_limits_itself_to_one_run():
    worker = _compose()["services"]["worker-gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
    assert worker["build"]["dockerfile"] == "infra/Dockerfile.gpu"
    command = " ".join(worker["command"])
    assert "prefect worker start --pool gpu" in command and "--limit 1" in command
    env = _environment(worker)
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["LIVO_ROOT"] == "/opt/livo"
    mounts = {volume.split(":")[1] for volume in worker["volumes"]}
    assert {"/opt/livo/outputs", "/cache/hf"} <= mounts


def test_dockerfile_installs_the_cuda_build_of_torch_and_the_repo():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    assert args["TORCH_VERSION"] == "2.14.1" and args["TORCHVISION_VERSION"] == "0.29.1"
    assert re.fullmatch(r"cu1\d\d", args["TORCH_CUDA"])
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"' in text
    assert '"torch==${TORCH_VERSION}"' in text and '"torchvision==${TORCHVISION_VERSION}"' in text
    assert re.search(r"^COPY \. /opt/livo$", text, re.MULTILINE)
    assert 'pip install -e "/opt/livo[judges]"' in text
    assert text.index("download.pytorch.org") < text.index("/opt/livo[judges]")  # CUDA torch first: pip keeps it
    assert re.search(r"^WORKDIR /opt/livo$", text, re.MULTILINE)
    assert "LIVO_ROOT=/opt/livo" in text and "HF_HOME=/cache/hf" in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_dockerignore_leaves_out_history_results_and_state():
    ignored = (INFRA.parent / ".dockerignore").read_text().split()
    assert {".git", "outputs/", ".livo/", "**/__pycache__", "**/*.egg-info"} <= set(ignored)


def _k8s_template() -> dict:
    return json.loads(K8S_TEMPLATE.read_text())


def _container(manifest: dict) -> dict:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return container


def test_k8s_template_requests_and_limits_gpus_from_the_gpus_variable():
    template = _k8s_template()
    assert set(template) == {"job_configuration", "variables"}
    resources = _container(template["job_configuration"]["job_manifest"])["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert resources["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    gpus = template["variables"]["properties"]["gpus"]
    assert gpus["type"] == "integer" and gpus["default"] == 1


def test_k8s_template_passes_prefects_work_pool_validation():
    # What the server runs on `prefect work-pool create --base-job-template`: every placeholder is a variable.
    WorkPoolCreate(name="gpu-k8s", type="kubernetes", base_job_template=_k8s_template())
    broken = _k8s_template()
    del broken["variables"]["properties"]["gpus"]
    with pytest.raises(ValueError, match="gpus"):
        WorkPoolCreate(name="gpu-k8s", type="kubernetes", base_job_template=broken)


def _render(values: dict) -> dict:
    """The job manifest as a worker renders it: the variables' non-null defaults, overridden by `values` (as
    BaseJobConfiguration.from_template_and_values does), applied with Prefect's templating."""
    template = _k8s_template()
    properties = template["variables"]["properties"]
    defaults = {name: spec["default"] for name, spec in properties.items() if spec.get("default") is not None}
    return apply_values(template["job_configuration"], defaults | values)["job_manifest"]


def test_k8s_manifest_rendered_with_defaults_requests_one_gpu_on_gpu_nodes():
    manifest = _render({})
    container = _container(manifest)
    assert container["resources"] == {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}
    assert container["env"] == {"LIVO_ROOT": "/opt/livo"}
    pod = manifest["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {}
    assert manifest["kind"] == "Job" and manifest["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_k8s_manifest_rendered_with_job_variables():
    selector = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    manifest = _render({"gpus": 2, "node_selector": selector, "image": "registry/livo-gpu:0.4.0"})
    container = _container(manifest)
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["image"] == "registry/livo-gpu:0.4.0"
    assert manifest["spec"]["template"]["spec"]["nodeSelector"] == selector


def _run_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    bash = shutil.which("bash")  # by its path: the scripts' PATH may lack it
    return subprocess.run([bash, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def script_env(tmp_path) -> dict[str, str]:
    """A bare environment: a PATH with only the few tools the script uses (no nvidia-smi), no GPUS, no
    PREFECT_API_URL, logs in tmp_path."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ["awk", "basename", "dirname", "ps", "uname", "mkdir", "seq", "sleep", "rm"]:
        if found := shutil.which(tool):
            (tools / tool).symlink_to(found)
    return {"PATH": str(tools), "HOME": str(tmp_path), "LOG_DIR": str(tmp_path / "workers")}


def _dry_run_commands(result: subprocess.CompletedProcess) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.strip().splitlines()]


def test_worker_script_dry_run_prints_one_limited_worker_per_gpu(script_env, tmp_path):
    env = script_env | {"GPUS": "0,1", "PREFECT_API_URL": "http://gpu-box:4200/api"}
    commands = _dry_run_commands(_run_script("--dry-run", env=env))
    assert len(commands) == 2
    for index, words in enumerate(commands):
        assert f"CUDA_VISIBLE_DEVICES={index}" in words
        assert f"LIVO_ROOT={INFRA.parent}" in words  # the repository, LIVO_ROOT being unset
        worker = words[words.index("prefect") : words.index(">")]
        assert worker[:9] == ["prefect", "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1"]
        assert worker[9] == "--name" and re.fullmatch(rf"livo-gpu{index}-\S+", worker[10]) and len(worker) == 11
        assert words[words.index(">") + 1] == f"{tmp_path}/workers/gpu{index}.log"
    assert not (tmp_path / "workers").exists()  # a dry run starts nothing and writes nothing


def test_worker_script_pool_and_livo_root_from_environment(script_env):
    env = script_env | {"GPUS": "3", "PREFECT_API_URL": "http://x/api", "POOL": "gpu-a100", "LIVO_ROOT": "/srv/livo"}
    (words,) = _dry_run_commands(_run_script("--dry-run", env=env))
    assert {"CUDA_VISIBLE_DEVICES=3", "LIVO_ROOT=/srv/livo"} <= set(words)
    assert words[words.index("--pool") + 1] == "gpu-a100"


def test_worker_script_without_nvidia_smi_or_gpus_fails_clearly(script_env):
    assert "GPUS" not in script_env and "nvidia-smi" not in os.listdir(script_env["PATH"])
    result = _run_script("--dry-run", env=script_env | {"PREFECT_API_URL": "http://x/api"})
    assert result.returncode != 0
    assert "nvidia-smi" in result.stderr and "GPUS" in result.stderr
    assert result.stdout == ""


def test_worker_script_without_prefect_api_url_fails_clearly(script_env):
    result = _run_script("--dry-run", env=script_env | {"GPUS": "0,1"})
    assert result.returncode != 0
    assert "PREFECT_API_URL" in result.stderr
    assert "prefect worker start" not in result.stdout


def test_worker_script_rejects_a_gpu_list_that_is_not_indices(script_env):
    result = _run_script("--dry-run", env=script_env | {"GPUS": "0,GPU-1", "PREFECT_API_URL": "http://x/api"})
    assert result.returncode != 0 and "GPU-1" in result.stderr

"""Shared fixtures: a real S3 protocol server (moto in server mode), fake credentials, one local Ray."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# Idle OpenMP threads must not spin: tests share 2 cores with Ray workers and each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Recognisable fake credentials: tests grep outputs for them to prove secrets never leak.
FAKE_KEY_ID = "AKIALLMGANTESTKEY000"
FAKE_SECRET = "llmgan-test-secret-DO-NOT-LEAK-0123456789"
BUCKET = "test-bucket"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _offline_env() -> Iterator[None]:
    """No hub access, no EC2 metadata probe, fake AWS credentials for every process the tests start."""
    os.environ.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    yield


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """LLMGAN_CACHE_DIR in a temporary folder for the whole session (and every process it starts): the suite never
    writes embedding tables or fetched packages into ~/.cache. A test wanting its own sets the variable itself."""
    from llmgan.io.cache import ENV

    old = os.environ.get(ENV)
    path = str(tmp_path_factory.mktemp("llmgan-cache"))
    os.environ[ENV] = path
    yield path
    if old is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = old


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server on 127.0.0.1 speaking the real HTTP protocol."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_url(s3_server: str) -> str:
    """A fresh, empty prefix in the test bucket: s3://test-bucket/<random>."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point AWS_ENDPOINT_URL_S3 at the moto server (for code that resolves the endpoint from the env)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    return s3_server


@pytest.fixture(scope="session")
def ray_local() -> Iterator[object]:
    """One local Ray instance for the whole session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        # address="local": never attach to a cluster someone started with `ray start` on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small, randomly initialised GAN checkpoint written by the project's own checkpoint code, recorded as a
    shapes-domain model (what the generation tests prompt it with)."""
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    path = str(tmp_path_factory.mktemp("ckpt") / "tiny")
    state = make_train_state(GanConfig(image_size=32, g_width=8, d_width=8), seed=0)
    save_checkpoint(path, state, training_state=False, extra={"domain": "shapes"})
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; two spinning threads crawl on a shared, busy CPU. A module opts in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""The container tests' fixtures: the image (built by `make test-containers` before pytest
runs), the local stack it talks to over the host's network, and containers that are
always removed and whose last log lines are printed, by name, when a test fails."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import LOCAL_ENV, S3_ENDPOINT, require  # noqa: E402

IMAGE = os.environ.get("IMAGE", "store-events:local")
HOW_TO_START = "run `make test-containers` (it starts the stack, a Docker engine and builds the image)"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


class Containers:
    """Containers started by one test, on the host's network so that they reach the local
    stack on 127.0.0.1; removed at the end, their logs printed if the test failed."""

    def __init__(self, tag: str):
        self.tag = tag
        self.names: list[str] = []

    def run(self, name: str, env: dict[str, str], *command: str, extra: tuple[str, ...] = ()) -> str:
        full = f"{self.tag}-{name}"
        args = ["run", "-d", "--name", full, "--network", "host"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        docker(*args, *extra, IMAGE, *command)
        self.names.append(full)
        return full

    def dump(self) -> None:
        for name in self.names:
            logs = docker("logs", "--tail", "40", name, check=False)
            print(f"--- last log lines of container {name} ---\n{logs.stdout}{logs.stderr}")

    def remove(self) -> None:
        for name in self.names:
            docker("rm", "-f", name, check=False)


@pytest.fixture(scope="session")
def image() -> str:
    if docker("info", check=False).returncode != 0:
        pytest.fail(f"No Docker engine answers: {HOW_TO_START}", pytrace=False)
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"The image {IMAGE} is not built: {HOW_TO_START}", pytrace=False)
    return IMAGE


@pytest.fixture
def stack() -> None:
    require("127.0.0.1:9092", "Apache Kafka", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)


@pytest.fixture
def containers(request, image):
    made = Containers(f"ct-{uuid.uuid4().hex[:8]}")
    yield made
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else True:
        made.dump()
    made.remove()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def s3_env(prefix: str) -> dict[str, str]:
    return {**LOCAL_ENV, "S3_ENDPOINT": S3_ENDPOINT, "S3_FORCE_PATH_STYLE": "true", "S3_PREFIX": prefix}

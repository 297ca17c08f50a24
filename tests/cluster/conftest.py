"""The cluster fixture: fails, saying how to start them, when the three nodes or the S3
server are not running; builds our binaries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import build_binaries, require  # noqa: E402
from kafka_cluster import CLUSTER, HOW_TO_START, NODES  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> str:
    for node in NODES:
        require(f"127.0.0.1:{9300 + node}", f"Kafka cluster node {node}", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    build_binaries()
    return CLUSTER

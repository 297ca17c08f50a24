"""A three-broker Apache Kafka cluster on 127.0.0.1 (`scripts/stack.sh cluster up`: KRaft,
every node broker and controller, replication factor 3, min.insync.replicas=2,
StandardAuthorizer), the S3 server of the local stack, and the tools the tests use to
look at the cluster from outside: kcat for metadata, offsets and records, Kafka's own
kafka-acls and kafka-leader-election through scripts/stack.sh.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness import Service, metric_values  # noqa: E402

NODES = (1, 2, 3)
CLUSTER = ",".join(f"127.0.0.1:{9300 + n}" for n in NODES)
# SASL_SSL with SCRAM-SHA-512, where the ACLs apply (users made by scripts/stack.sh).
CLUSTER_SCRAM = ",".join(f"127.0.0.1:{9320 + n}" for n in NODES)
OWNER = {"sale_event": "sales-consumer", "inventory_event": "inventory-consumer"}
HOW_TO_START = (
    "start the three-node cluster with `scripts/stack.sh cluster up` and the S3 server with "
    "`scripts/stack.sh up`, or run everything with `make test`"
)


def stack(*args: str, timeout: float = 180) -> str:
    """scripts/stack.sh with `args`; its output, or the test fails with it."""
    done = subprocess.run(
        [str(REPO / "scripts" / "stack.sh"), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"scripts/stack.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_kcat(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kcat", "-b", CLUSTER, *args], capture_output=True, timeout=timeout)


def kcat(*args: str, timeout: float = 60) -> str:
    done = run_kcat(*args, timeout=timeout)
    assert done.returncode == 0, f"kcat {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode()


def partitions(topic: str | None = None) -> list[dict]:
    """Every partition's metadata (kcat -L): topic, partition, leader, replicas, isrs."""
    found = json.loads(kcat("-L", "-J", *(["-t", topic] if topic else [])))
    return [
        {
            "topic": t["topic"],
            "partition": p["partition"],
            "leader": p["leader"],
            "replicas": [r["id"] for r in p["replicas"]],
            "isrs": [r["id"] for r in p["isrs"]],
        }
        for t in found["topics"]
        for p in t.get("partitions", [])
    ]


def wait_fully_replicated(seconds: float = 120) -> float:
    """Waits until every partition of every topic has all its replicas in sync (what MSK
    waits for before it restarts the next broker); how long that took."""
    started = time.monotonic()
    while True:
        lagging = [p for p in partitions() if sorted(p["isrs"]) != sorted(p["replicas"]) or p["leader"] < 0]
        if not lagging:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"partitions not fully replicated after {seconds}s: {lagging[:5]}"
        time.sleep(0.5)


def end_offsets(topic: str) -> dict[int, int]:
    """The end offset (the next offset to be written) of each partition of `topic` (kcat -Q
    with timestamp -1, Kafka's "latest")."""
    queries = [arg for p in partitions(topic) for arg in ("-t", f"{topic}:{p['partition']}:-1")]
    deadline = time.monotonic() + 30
    while True:  # a leader that just moved answers "not available" for a moment
        done = run_kcat("-Q", "-J", *queries)
        if done.returncode == 0:
            found = json.loads(done.stdout)[topic]
            return {int(p): v["offset"] for p, v in found.items() if p != "topic"}
        assert time.monotonic() < deadline, f"kcat -Q {topic}: {done.stderr.decode()}"
        time.sleep(0.5)


def request_ids_on_topic(topic: str) -> Counter:
    """How often each `request_id` is on `topic`, read with kcat."""
    counts = Counter()
    for line in kcat("-C", "-t", topic, "-e", "-q", "-f", "%s\\n", timeout=120).splitlines():
        if line:
            counts[json.loads(line)["request_id"]] += 1
    return counts


def event(rng: random.Random) -> dict:
    return {
        "request_id": str(uuid.uuid4()),
        "event_type": rng.choice(list(OWNER)),
        "store_id": rng.randint(1, 10),
        "cust_id": rng.randint(100, 999),
        "category": rng.choice(["Books", "Games", "Mobiles"]),
        "sku": rng.randint(18_981, 18_999),
        "price": rng.randint(0, 10_000) / 100,
        "qty": rng.randint(1, 38),
        "discount": rng.randint(0, 200) / 10,
        "gift_wrap": False,
        "variant": "red",
        "priority_shipping": False,
        "ts": datetime.now(timezone.utc).isoformat(),
    }


def committed(consumer: Service) -> dict[int, int]:
    values = metric_values(consumer.metrics(), "consumer_committed_offset")
    return {int(label.split('"')[1]): int(v) for label, v in values.items()}


def wait_caught_up(consumers: list[Service], ends: dict[int, int], seconds: float = 180) -> float:
    """Waits until every consumer has committed (in S3) every offset below `ends`; how long."""
    started = time.monotonic()
    for consumer in consumers:
        while True:
            done = committed(consumer)
            if all(done.get(p, 0) >= end for p, end in ends.items()):
                break
            assert consumer.process.poll() is None, f"{consumer.name} exited: {consumer.log.read_text()[-3000:]}"
            assert time.monotonic() - started < seconds, f"{consumer.name} committed {done}, not {ends}"
            time.sleep(0.25)
    return time.monotonic() - started


class ResponseDropper:
    """A TCP proxy in front of each node (127.0.0.1:937N -> the node's PROXIED listener on
    936N, which advertises 937N, so a client bootstrapped through the proxies stays behind
    them). It passes Kafka's frames both ways and, when armed, loses the broker's answer to
    a `Produce` request: the broker wrote the batch, the client never hears so, and the
    connection closes. The Rust tests' `testkit::faults` does the same before the single
    node."""

    PRODUCE = 0

    def __init__(self):
        self.armed = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.servers = []
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10), "the fault proxy did not start"
        self.bootstrap = ",".join(f"127.0.0.1:{9370 + n}" for n in NODES)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        for node in NODES:
            relay = functools.partial(self._relay, 9360 + node)
            self.servers.append(self.loop.run_until_complete(asyncio.start_server(relay, "127.0.0.1", 9370 + node)))
        started.set()
        self.loop.run_forever()

    def arm(self, answers: int) -> None:
        """Loses the next `answers` answers to `Produce` requests, one connection each."""
        with self.lock:
            self.armed += answers

    def _take(self) -> bool:
        with self.lock:
            if self.armed == 0:
                return False
            self.armed -= 1
            self.dropped += 1
            return True

    async def _relay(self, port: int, client_reader, client_writer) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_writer.close()
            return
        produce_ids: set[int] = set()

        async def frames(reader):
            while True:
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                yield await reader.readexactly(size)

        async def requests():
            async for frame in frames(client_reader):
                # Request header: api key (2), version (2), correlation id (4).
                if struct.unpack(">h", frame[:2])[0] == self.PRODUCE:
                    produce_ids.add(struct.unpack(">i", frame[4:8])[0])
                broker_writer.write(struct.pack(">i", len(frame)) + frame)
                await broker_writer.drain()

        async def responses():
            async for frame in frames(broker_reader):
                correlation_id = struct.unpack(">i", frame[:4])[0]
                if correlation_id in produce_ids:
                    produce_ids.discard(correlation_id)
                    if self._take():
                        return  # both sides close: the answer is lost with the connection
                client_writer.write(struct.pack(">i", len(frame)) + frame)
                await client_writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            client_writer.close()
            broker_writer.close()

    async def _shutdown(self) -> None:
        for server in self.servers:
            server.close()
        relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

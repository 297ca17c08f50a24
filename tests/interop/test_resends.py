"""Resends stored once, end to end (README, Security: "Resends"). Stores send the same 10,000
events twice, through two producer instances (the second cannot know the first's answers),
and other clients send 500 of them a third time with kcat, keyed by store the way Kafka's
Java client partitions (murmur2); meanwhile a consumer of the group is killed with -9 and
another joins. boto3 then finds every request_id in S3 exactly once, and the consumer's own
audit counts the copies it removed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (  # noqa: E402
    BUCKET,
    S3_ENDPOINT,
    Service,
    build_binaries,
    metric_values,
    post_json,
    require,
    run_binary,
    store_event,
    stored_lines,
    wait_for,
)

KAFKA = "127.0.0.1:9092"
HOW_TO_START = "start the local stack with `make stack-up` (scripts/stack.sh up), or run everything with `make test`"
EVENTS, PER_REQUEST, BY_KCAT, PARTITIONS = 10_000, 100, 500, 4


def end_offsets(topic: str) -> dict[int, int]:
    """Each partition's end offset, from kcat (-Q with Kafka's "latest", -1)."""
    queries = [arg for p in range(PARTITIONS) for arg in ("-t", f"{topic}:{p}:-1")]
    out = subprocess.run(["kcat", "-b", KAFKA, "-Q", "-J", *queries], capture_output=True, check=True, timeout=60)
    found = json.loads(out.stdout)[topic]
    return {int(p): v["offset"] for p, v in found.items() if p != "topic"}


def committed(consumers: list[Service]) -> dict[int, float]:
    """The offsets committed to S3 per partition, by whichever live member owns it."""
    done: dict[int, float] = {}
    for consumer in consumers:
        for labels, value in metric_values(consumer.metrics(), "consumer_committed_offset").items():
            partition = int(labels.split('"')[1])
            done[partition] = max(done.get(partition, 0), value)
    return done


def test_resends_through_two_producers_a_kill_and_a_rebalance_are_stored_once(tmp_path):
    require(KAFKA, "Apache Kafka", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    build_binaries()
    tag = uuid.uuid4().hex[:8]
    topic, prefix = f"resends-{tag}", f"resends-{tag}"
    common = {"STORE_EVENTS_TOPIC": topic, "TOPIC_PARTITIONS": str(PARTITIONS), "GENERATOR_RATE": "0"}
    consumer_env = {
        "STORE_EVENTS_TOPIC": topic,
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT": S3_ENDPOINT,
        "S3_FORCE_PATH_STYLE": "true",
        "S3_PREFIX": prefix,
        "CONSUMER_GROUP_ID": f"{prefix}-sales",
        "CONSUMER_SESSION_TIMEOUT": "6s",
        "CONSUMER_HEARTBEAT_INTERVAL": "1s",
        "BATCH_MAX_EVENTS": "500",
        "BATCH_MAX_AGE": "1s",
        "CHECKPOINT_INTERVAL": "1s",
    }
    rng = random.Random(24)
    events = [{**store_event("sale_event", n), "store_id": rng.randint(1, 20)} for n in range(EVENTS)]
    producers = [Service("producer", common, tmp_path, label=f"producer-{i}") for i in (1, 2)]
    consumers = [Service("sales-consumer", consumer_env, tmp_path, label=f"sales-{name}") for name in "ab"]
    killed = consumers[0]
    try:
        for service in producers + consumers:
            service.wait_ready()

        # The first copy through producer 1.
        for start in range(0, EVENTS, PER_REQUEST):
            answer = post_json(f"{producers[0].url}/v1/events", events[start : start + PER_REQUEST])
            assert answer["accepted"] == PER_REQUEST, answer
        # The second, in other requests, through producer 2; halfway a consumer dies and another joins.
        again = events[:]
        rng.shuffle(again)
        for start in range(0, EVENTS, PER_REQUEST):
            if start == EVENTS // 2:
                killed.process.kill()
                consumers.append(Service("sales-consumer", consumer_env, tmp_path, label="sales-c"))
            answer = post_json(f"{producers[1].url}/v1/events", again[start : start + PER_REQUEST])
            assert answer["accepted"] == PER_REQUEST, answer
        # A third copy of some from another client, keyed by store with Kafka's Java partitioner.
        lines = "".join(f"{e['store_id']}\t{json.dumps(e)}\n" for e in events[:BY_KCAT])
        subprocess.run(
            ["kcat", "-P", "-b", KAFKA, "-t", topic, "-K", "\t", "-X", "partitioner=murmur2_random"],
            input=lines.encode(),
            check=True,
            timeout=60,
        )

        live = consumers[1:]
        ends = end_offsets(topic)
        assert sum(ends.values()) == 2 * EVENTS + BY_KCAT, ends
        wait_for(
            f"the group to commit every offset of {ends}",
            lambda: all(committed(live).get(p, 0) >= end for p, end in ends.items()),
            seconds=180,
        )
        rebalances = metric_values(live[0].metrics(), "consumer_rebalances_total")[""]
        assert rebalances >= 2, f"sales-b saw {rebalances} rebalances: the kill and the join did not rebalance the group"
    finally:
        for service in [*consumers, *producers]:
            if service is not killed:
                assert service.stop() == 0, f"{service.name}: {service.log.read_text()[-3000:]}"

    stored = Counter(e["request_id"] for e in stored_lines(f"{prefix}/event_type=sale_event/"))
    sent = {e["request_id"] for e in events}
    assert set(stored) == sent, f"{len(sent - set(stored))} events missing, {len(set(stored) - sent)} unknown"
    twice = [i for i, n in stored.items() if n > 1]
    assert not twice, f"{len(twice)} events stored more than once, e.g. {twice[:3]}"

    audit = run_binary("sales-consumer", consumer_env, "audit", "--json")
    assert audit.returncode == 0, f"{audit.stdout}\n{audit.stderr}"
    partitions = json.loads(audit.stdout)["partitions"]
    removed = sum(p["duplicates"] for p in partitions)
    assert (sum(p["stored"] for p in partitions), removed) == (EVENTS, EVENTS + BY_KCAT), partitions
    assert all(p["stored_twice"] == 0 for p in partitions), partitions
    print(f"{2 * EVENTS + BY_KCAT} records, {EVENTS} events stored once each, {removed} resends removed", flush=True)

"""What a rolling restart, a broker killed with -9 and a preferred-leader election do to the
whole system: the producer under steady HTTP load (unique `request_id`s) and both
consumers, against the three-broker cluster; and lost answers to produce requests (a TCP
proxy before each broker), which the idempotent producer retries without duplicates.

After each fault (the load paused for the checks) and at the end, every event the
producer acknowledged (a 200, or listed in a 503's `written`) is on the topic exactly
once (read with kcat) and in S3 exactly once (read with boto3), both consumers' audits
are clean, and an event answered 503 that landed anyway is
counted, never doubled. The figures an operator wants are printed as a table (run with
`-s` to see it): per fault, the longest time without a 200 answer, the 503s, the slowest
answer, and how long the consumers took to have everything written before the broker was
back.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from kafka_cluster import (
    NODES,
    OWNER,
    ResponseDropper,
    end_offsets,
    event,
    partitions,
    request_ids_on_topic,
    stack,
    wait_caught_up,
    wait_fully_replicated,
)
from harness import BUCKET, S3_ENDPOINT, Service, post, run_binary, stored_lines

PARTITIONS = 3
EVENTS_PER_REQUEST = 10
SENDERS = 2


@dataclass
class Answer:
    sent: float
    answered: float
    status: int
    ids: list[str]
    written: list[str]


@dataclass
class Load:
    """`SENDERS` stores posting `EVENTS_PER_REQUEST` events at a time, one request after
    another, until stopped; every answer kept."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    event_types: dict[str, str] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Paused between faults, while the checks read the topic and S3 (kcat finds no end
    # under a steady load); `busy` counts the requests in flight.
    paused: bool = False
    busy: int = 0
    turn: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self.send, args=(seed,), daemon=True) for seed in range(SENDERS)]
        for thread in self.threads:
            thread.start()

    def send(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stopping.is_set():
            with self.turn:
                self.turn.wait_for(lambda: not self.paused or self.stopping.is_set())
                self.busy += 1
            events = [event(rng) for _ in range(EVENTS_PER_REQUEST)]
            sent = time.monotonic()
            try:
                status, body = post(f"{self.url}/v1/events", events, timeout=60)
            finally:
                with self.turn:
                    self.busy -= 1
                    self.turn.notify_all()
            written = []
            if status == 503:
                written = [w["request_id"] for w in json.loads(body).get("written", [])]
            else:
                assert status == 200, f"unexpected answer {status}: {body}"
            with self.lock:
                self.event_types.update((e["request_id"], e["event_type"]) for e in events)
                self.answers.append(Answer(sent, time.monotonic(), status, [e["request_id"] for e in events], written))
            time.sleep(0.02)

    def pause(self) -> None:
        """Returns once no request is in flight and none will start until `resume`."""
        with self.turn:
            self.paused = True
            assert self.turn.wait_for(lambda: self.busy == 0, timeout=90), "requests still in flight after 90 s"

    def resume(self) -> None:
        with self.turn:
            self.paused = False
            self.turn.notify_all()

    def stop(self) -> None:
        self.stopping.set()
        self.resume()
        for thread in self.threads:
            thread.join(timeout=90)

    def acknowledged(self) -> set[str]:
        return {i for a in self.answers for i in (a.ids if a.status == 200 else a.written)}

    def unacknowledged(self) -> set[str]:
        return {i for a in self.answers for i in a.ids} - self.acknowledged()

    def during(self, start: float, end: float) -> dict:
        """The producer's answers to requests sent between `start` and `end`."""
        with self.lock:
            answers = [a for a in self.answers if start <= a.sent <= end]
        ok = sorted(a.answered for a in answers if a.status == 200)
        gaps = [b - a for a, b in zip([start, *ok], [*ok, end])]
        return {
            "requests": len(answers),
            "503": sum(a.status == 503 for a in answers),
            "longest without a 200 (s)": round(max(gaps), 2),
            "slowest answer (s)": round(max((a.answered - a.sent for a in answers), default=0), 2),
        }


def assert_exactly_once(load: Load, topic: str, prefix: str, consumer_env: dict[str, str], after: str) -> None:
    """With the load paused and the consumers caught up: each acknowledged event on the
    topic exactly once (kcat) and in S3 exactly once under its type (boto3), nothing on
    the topic that nobody sent, an unacknowledged event at most once, the audits clean."""
    on_topic = request_ids_on_topic(topic)
    acknowledged, unacknowledged = load.acknowledged(), load.unacknowledged()
    missing = [i for i in acknowledged if on_topic[i] == 0]
    assert not missing, f"after {after}: {len(missing)} acknowledged events are not on the topic, e.g. {missing[:3]}"
    doubled = {i: n for i, n in on_topic.items() if n > 1}
    assert not doubled, f"after {after}: {len(doubled)} events on the topic more than once: {list(doubled.items())[:3]}"
    unknown = set(on_topic) - acknowledged - unacknowledged
    assert not unknown, f"after {after}: events on the topic that nobody sent: {list(unknown)[:3]}"
    for event_type, consumer in OWNER.items():
        stored = Counter(e["request_id"] for e in stored_lines(f"{prefix}/event_type={event_type}/"))
        expected = {i for i in on_topic if load.event_types[i] == event_type}
        assert set(stored) == expected, (
            f"after {after}, {event_type}: {len(expected - set(stored))} missing from S3, "
            f"{len(set(stored) - expected)} unexpected"
        )
        assert max(stored.values(), default=1) == 1, f"after {after}, {event_type} stored twice"
        audit = run_binary(consumer, {**consumer_env, "CONSUMER_GROUP_ID": f"{prefix}-{consumer}"}, "audit")
        assert audit.returncode == 0, f"after {after}, {consumer} audit:\n{audit.stdout}\n{audit.stderr}"
    landed = sum(on_topic[i] for i in unacknowledged)
    print(f"after {after}: {len(acknowledged)} events acknowledged, each once on the topic and in S3; "
          f"{len(unacknowledged)} not ({landed} of those landed anyway, once)", flush=True)


def leader_of_most(topic: str) -> int:
    return Counter(p["leader"] for p in partitions(topic)).most_common(1)[0][0]


def test_rolling_restart_kill_and_election_lose_and_double_nothing(cluster, tmp_path):
    wait_fully_replicated()
    tag = uuid.uuid4().hex[:8]
    topic, prefix = f"cluster-{tag}", f"cluster-{tag}"
    common = {"KAFKA_BOOTSTRAP_SERVERS": cluster, "STORE_EVENTS_TOPIC": topic}
    producer = Service(
        "producer",
        {**common, "TOPIC_PARTITIONS": str(PARTITIONS), "TOPIC_REPLICATION_FACTOR": "3", "GENERATOR_RATE": "0"},
        tmp_path,
    )
    consumer_env = {
        **common,
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT": S3_ENDPOINT,
        "S3_FORCE_PATH_STYLE": "true",
        "S3_PREFIX": prefix,
        "BATCH_MAX_AGE": "1s",
        "CHECKPOINT_INTERVAL": "5s",
        "CONSUMER_SESSION_TIMEOUT": "10s",
        "CONSUMER_HEARTBEAT_INTERVAL": "1s",
    }
    consumers = []
    load = None
    try:
        producer.wait_ready()
        consumers = [
            Service(name, {**consumer_env, "CONSUMER_GROUP_ID": f"{prefix}-{name}"}, tmp_path) for name in OWNER.values()
        ]
        for consumer in consumers:
            consumer.wait_ready()
        load = Load(producer.url)
        load.start()
        time.sleep(5)

        report = []

        def fault(name: str, act) -> None:
            start = time.monotonic()
            act()
            replicated = wait_fully_replicated()
            back = time.monotonic()
            caught_up = wait_caught_up(consumers, end_offsets(topic))
            time.sleep(2)
            row = {"fault": name, **load.during(start, back + 2)}
            row["cluster whole again after (s)"] = round(back - start, 1)
            row["consumers caught up after (s)"] = round(caught_up, 1)
            report.append(row)
            print(f"{row} (ISR complete {replicated:.1f}s after the node was up)", flush=True)
            load.pause()
            wait_caught_up(consumers, end_offsets(topic))
            assert_exactly_once(load, topic, prefix, consumer_env, name)
            load.resume()

        for node in NODES:
            fault(
                f"restart node {node} (SIGTERM, 5 s down)",
                lambda n=node: (stack("cluster", "stop", str(n)), time.sleep(5), stack("cluster", "start", str(n))),
            )
        victim = leader_of_most(topic)
        fault(
            f"kill -9 node {victim} (5 s down)",
            lambda: (stack("cluster", "kill", str(victim)), time.sleep(5), stack("cluster", "start", str(victim))),
        )
        before = {p["partition"]: p["leader"] for p in partitions(topic)}
        fault("preferred-leader election", lambda: stack("cluster", "elect"))
        after = {p["partition"]: p["leader"] for p in partitions(topic)}
        print(f"leaders before the election {before}, after {after}")
        assert all(p["leader"] == p["replicas"][0] for p in partitions(topic)), "the election left leaders off their preferred replica"

        load.stop()
        wait_caught_up(consumers, end_offsets(topic))
    finally:
        if load:
            load.stop()
        for service in [*consumers, producer]:
            status = service.stop()
            assert status == 0, f"{service.name} exited {status}: {service.log.read_text()[-3000:]}"

    print("\n| " + " | ".join(report[0]) + " |\n|" + " --- |" * len(report[0]))
    for row in report:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")

    assert len(load.acknowledged()) > 1000, f"too few events were acknowledged to mean anything: {len(load.acknowledged())}"
    assert_exactly_once(load, topic, prefix, consumer_env, "the consumers stopped")


@pytest.mark.parametrize("idempotence", ["true", "false"])
def test_lost_produce_answers_are_retried_and_stored_once_only_with_idempotence(cluster, tmp_path, idempotence):
    """Without idempotence (the control) the same faults store the resent batches twice:
    the proof that the proxy's fault reaches the client."""
    wait_fully_replicated()
    proxy = ResponseDropper()
    topic = f"cluster-lost-{uuid.uuid4().hex[:8]}"
    producer = Service(
        "producer",
        {
            "KAFKA_BOOTSTRAP_SERVERS": proxy.bootstrap,
            "STORE_EVENTS_TOPIC": topic,
            "TOPIC_PARTITIONS": str(PARTITIONS),
            "TOPIC_REPLICATION_FACTOR": "3",
            "PRODUCE_TIMEOUT": "30s",
            "PRODUCER_IDEMPOTENCE": idempotence,
        },
        tmp_path,
    )
    rng, requests, drops = random.Random(3), 60, 6
    sent, acknowledged = [], set()
    try:
        producer.wait_ready()
        for request in range(requests):
            if request % (requests // drops) == 5:
                proxy.arm(1)
            events = [event(rng) for _ in range(EVENTS_PER_REQUEST)]
            sent.extend(e["request_id"] for e in events)
            status, body = post(f"{producer.url}/v1/events", events, timeout=60)
            if status == 200:
                acknowledged.update(e["request_id"] for e in events)
            else:
                assert status == 503, body
                acknowledged.update(w["request_id"] for w in json.loads(body).get("written", []))
    finally:
        proxy.stop()
        assert producer.stop() == 0, producer.log.read_text()[-3000:]
    assert proxy.dropped == drops, f"the proxy lost {proxy.dropped} answers, not {drops}"
    on_topic = request_ids_on_topic(topic)
    doubled = [i for i, n in on_topic.items() if n > 1]
    print(f"idempotence={idempotence}: {len(acknowledged)} of {len(sent)} events answered 200 with {drops} "
          f"produce answers lost; {len(doubled)} stored twice")
    assert len(acknowledged) >= len(sent) // 2, "too few events were acknowledged to mean anything"
    assert all(on_topic[i] >= 1 for i in acknowledged), "an acknowledged event is missing"
    assert set(on_topic) <= set(sent)
    if idempotence == "true":
        assert not doubled, f"stored twice: {doubled[:3]}"
    else:
        assert doubled, "no batch was stored twice: the proxy's fault did not reach the client"

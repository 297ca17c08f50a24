//! Consumer groups (`CONSUMER_ASSIGNMENT=group`, the default) with the real binary, as
//! Kubernetes or `docker compose up --scale` runs it, while events keep arriving: the
//! instances share the topic's partitions through Kafka's group protocol, hand them over
//! on every scale step and after a kill -9, and S3 ends with every event exactly once.
//! Kafka's own `kafka-consumer-groups.sh` (from the broker's jars) checks the group.
//!
//! `STORE_EVENTS_TEST_KAFKA=127.0.0.1:9192` runs the same against Apache Kafka 3.9
//! (`scripts/stack.sh start kafka-3.9`; `make test` does both).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

#[path = "../../../shared/consumer/tests/common/mod.rs"]
mod common;
mod process;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use store_consumer::ConsumerConfig;
use store_event::EventType;
use testkit::GroupMember;

use process::{LogOnFailure, Producing};

/// A consumer's log line written between a ledger entry and its objects.
const ENTRY_WRITTEN: &str = "Ledger entry written; writing its objects.";
/// The log line of a fenced-off batch.
const FENCED: &str = "Another instance wrote the next ledger entry";

/// A topic, a consumer group, the consumers' settings, and their logs.
struct Scenario {
    topic: String,
    group: String,
    config: ConsumerConfig,
    env: Vec<(String, String)>,
    logs: LogOnFailure,
}

impl Scenario {
    /// A new topic of `partitions` partitions and a group of its own.
    async fn new(name: &str, partitions: i32) -> Scenario {
        testkit::require_kafka();
        testkit::require_s3();
        let topic = testkit::unique_topic(name);
        testkit::create_topic(&topic, partitions).await;
        let prefix = testkit::unique_name("g");
        let group = format!("test-{topic}");
        let config = common::config(EventType::Sale, &topic, &prefix, &[("CONSUMER_GROUP_ID", &group)]);
        let env = group_env(&topic, &prefix, &group);
        Scenario { topic, group, config, env, logs: LogOnFailure::default() }
    }

    /// The log file of instance `name`.
    fn log(&mut self, name: &str) -> PathBuf {
        self.logs.add(&format!("{}-{name}", self.topic))
    }

    /// Stops producing, waits until S3 and the group's committed offsets have every
    /// event, stops the instances with SIGTERM, and checks that each event is stored once.
    async fn finish(&self, producing: Producing, instances: Vec<Child>, partitions: i32, context: &str) {
        let produced = producing.finish().await;
        common::wait_until_caught_up(&self.config, partitions, Duration::from_secs(120)).await;
        wait_for_lag_zero(&self.group, usize::try_from(partitions).unwrap(), Duration::from_secs(60)).await;
        for instance in instances {
            assert!(process::terminate(instance).await.success(), "an instance did not stop cleanly ({context})");
        }
        println!("{} events produced", produced.len());
        process::assert_exactly_once(&self.config, &produced, context).await;
    }
}

fn group_env(topic: &str, prefix: &str, group: &str) -> Vec<(String, String)> {
    process::env(
        topic,
        prefix,
        &[
            ("CONSUMER_GROUP_ID", group),
            // The broker's smallest (group.min.session.timeout.ms), so that a kill -9 is
            // noticed soon.
            ("CONSUMER_SESSION_TIMEOUT", "6s"),
            ("CONSUMER_HEARTBEAT_INTERVAL", "1s"),
            ("BATCH_MAX_AGE", "300ms"),
            ("PARTITION_REFRESH", "2s"),
            ("RUST_LOG", "info,store_consumer=debug"),
        ],
    )
}

/// Asks Kafka's tool (every second, for at most `limit`) until the group's members hold
/// `shares` partitions (in any order); returns them.
async fn wait_for_members(group: &str, shares: &[usize], limit: Duration) -> Vec<GroupMember> {
    let mut expected = shares.to_vec();
    expected.sort_unstable();
    let deadline = Instant::now() + limit;
    loop {
        let group_id = group.to_owned();
        let members = tokio::task::spawn_blocking(move || testkit::describe_members(&group_id)).await.unwrap();
        let mut held: Vec<usize> = members.iter().map(|m| m.partitions).collect();
        held.sort_unstable();
        if held == expected {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "the group's members hold {held:?} partitions, not {expected:?}: {members:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until Kafka's tool shows every partition of the group at lag 0.
async fn wait_for_lag_zero(group: &str, partitions: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let group_id = group.to_owned();
        let rows = tokio::task::spawn_blocking(move || testkit::describe_group(&group_id)).await.unwrap();
        if rows.len() == partitions && rows.iter().all(|r| r.lag == Some(0) && r.committed.is_some()) {
            println!("kafka-consumer-groups --describe at the end: {rows:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the group's lag did not reach 0: {rows:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The time of the first line of `log` containing `needle` (text logs begin with it).
fn first_line_time(log: &Path, needle: &str) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|line| line.contains(needle))?;
    line.split_whitespace().next()?.parse().ok()
}

fn count_lines(logs: &[&Path], needle: &str) -> usize {
    logs.iter().map(|log| std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_1_3_2_1_while_events_arrive_stores_each_once() {
    const PARTITIONS: i32 = 6;
    let mut scenario = Scenario::new("scale", PARTITIONS).await;
    let (log_a, log_b, log_c) = (scenario.log("a"), scenario.log("b"), scenario.log("c"));
    let (env, group) = (scenario.env.clone(), scenario.group.clone());
    let limit = Duration::from_secs(60);

    let producing = Producing::start(&scenario.topic, PARTITIONS, 6_000, Duration::from_millis(25), 1103);
    let a = process::spawn(&env, &log_a);
    wait_for_members(&group, &[6], limit).await;

    // 1 -> 3: the newcomers get their share; Kafka's tool shows the three members.
    let b = process::spawn(&env, &log_b);
    let started_c = Utc::now();
    let c = process::spawn(&env, &log_c);
    let members = wait_for_members(&group, &[2, 2, 2], limit).await;
    println!("kafka-consumer-groups --describe --members with three instances: {members:?}");
    assert!(members.iter().all(|m| m.client_id == "sales-consumer"), "{members:?}");
    let deadline = Instant::now() + limit;
    let first_batch = loop {
        if let Some(at) = first_line_time(&log_c, ENTRY_WRITTEN) {
            break at;
        }
        assert!(Instant::now() < deadline, "the third instance committed no batch within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "scale-out 2 -> 3 instances: {:.2} s from the new instance's start to its first committed batch",
        (first_batch - started_c).num_milliseconds() as f64 / 1000.0
    );

    // 3 -> 2 -> 1, each on SIGTERM (a dynamic member leaves the group as it stops).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(process::terminate(c).await.success(), "the third instance did not stop cleanly");
    wait_for_members(&group, &[3, 3], limit).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(process::terminate(b).await.success(), "the second instance did not stop cleanly");
    wait_for_members(&group, &[6], limit).await;

    scenario.finish(producing, vec![a], PARTITIONS, "after scaling 1 -> 3 -> 2 -> 1").await;
    let fenced = count_lines(&[&log_a, &log_b, &log_c], FENCED);
    println!("fenced batches: {fenced}");
    assert_eq!(fenced, 0, "a graceful scale step let two instances write one partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_partitions_are_taken_over_after_its_session_times_out() {
    const PARTITIONS: i32 = 4;
    let mut scenario = Scenario::new("takeover", PARTITIONS).await;
    let (log_a, log_b) = (scenario.log("a"), scenario.log("b"));
    let (env, group) = (scenario.env.clone(), scenario.group.clone());
    let limit = Duration::from_secs(60);

    let producing = Producing::start(&scenario.topic, PARTITIONS, 6_000, Duration::from_millis(25), 1104);
    let a = process::spawn(&env, &log_a);
    wait_for_members(&group, &[4], limit).await;
    let mut b: Child = process::spawn(&env, &log_b);
    wait_for_members(&group, &[2, 2], limit).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed = Utc::now();
    b.kill().expect("kill -9");
    let _ = b.wait();
    wait_for_members(&group, &[4], limit).await;
    let text = std::fs::read_to_string(&log_a).unwrap_or_default();
    let took_over = text
        .lines()
        .filter(|line| line.contains("Joined the consumer group.") && line.contains("partitions=[0, 1, 2, 3]"))
        .filter_map(|line| line.split_whitespace().next()?.parse::<DateTime<Utc>>().ok())
        .find(|at| *at > killed)
        .expect("the survivor logged no join with every partition after the kill");
    println!(
        "kill -9: the survivor held every partition {:.2} s later (session timeout 6 s)",
        (took_over - killed).num_milliseconds() as f64 / 1000.0
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    scenario.finish(producing, vec![a], PARTITIONS, "after a member's kill -9").await;
    println!("fenced batches: {}", count_lines(&[&log_a, &log_b], FENCED));
}

/// The generation of the last "Joined the consumer group." line of `log`.
fn last_generation(log: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|line| line.contains("Joined the consumer group."))?;
    line.split("generation=").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// A rolling restart of a StatefulSet: each pod comes back under its name, its
/// `CONSUMER_GROUP_INSTANCE_ID`, within the session timeout, and takes its partitions back
/// without a rebalance: the generation does not change and the other member reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_in_time_takes_its_partitions_back_without_a_rebalance() {
    const PARTITIONS: i32 = 4;
    let mut scenario = Scenario::new("static", PARTITIONS).await;
    let (log_a, log_b, log_b2) = (scenario.log("a"), scenario.log("b"), scenario.log("b2"));
    let (mut env, group) = (scenario.env.clone(), scenario.group.clone());
    env.retain(|(k, _)| k != "CONSUMER_SESSION_TIMEOUT");
    env.push(("CONSUMER_SESSION_TIMEOUT".to_owned(), "30s".to_owned()));
    let as_pod = |name: &str| {
        let mut env = env.clone();
        env.push(("CONSUMER_GROUP_INSTANCE_ID".to_owned(), name.to_owned()));
        env
    };
    let limit = Duration::from_secs(60);

    let producing = Producing::start(&scenario.topic, PARTITIONS, 6_000, Duration::from_millis(25), 1105);
    let a = process::spawn(&as_pod("consumer-0"), &log_a);
    wait_for_members(&group, &[4], limit).await;
    let b = process::spawn(&as_pod("consumer-1"), &log_b);
    wait_for_members(&group, &[2, 2], limit).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let generation = last_generation(&log_a).expect("the first instance logged no join");
    assert_eq!(last_generation(&log_b), Some(generation));

    assert!(process::terminate(b).await.success(), "the second instance did not stop cleanly");
    let b = process::spawn(&as_pod("consumer-1"), &log_b2);
    let deadline = Instant::now() + limit;
    while last_generation(&log_b2).is_none() {
        assert!(Instant::now() < deadline, "the restarted instance did not rejoin within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let members = wait_for_members(&group, &[2, 2], limit).await;
    let mut names: Vec<Option<String>> = members.iter().map(|m| m.instance_id.clone()).collect();
    names.sort();
    assert_eq!(names, [Some("consumer-0".to_owned()), Some("consumer-1".to_owned())], "{members:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(last_generation(&log_b2), Some(generation), "the restarted instance joined a new generation");
    assert_eq!(last_generation(&log_a), Some(generation), "the other instance rebalanced");
    assert_eq!(
        count_lines(&[&log_a], "The group is rebalancing"),
        1,
        "only the second instance's first join rebalanced"
    );

    scenario.finish(producing, vec![b, a], PARTITIONS, "after a static member's restart").await;
}

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

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rskafka::client::group::{
    CONSUMER_PROTOCOL_TYPE, ConsumerAssignment, ConsumerSubscription, JoinSettings, TopicPartitions,
};
use store_consumer::ConsumerConfig;
use store_event::EventType;
use testkit::GroupMember;
use tokio_util::sync::CancellationToken;

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
        Scenario::in_group(name, partitions, None).await
    }

    /// A new topic of `partitions` partitions, read in `group` (one of its own if `None`).
    async fn in_group(name: &str, partitions: i32, group: Option<&str>) -> Scenario {
        testkit::require_kafka();
        testkit::require_s3();
        let topic = testkit::unique_topic(name);
        testkit::create_topic(&topic, partitions).await;
        let prefix = testkit::unique_name("g");
        let group = group.map_or_else(|| format!("test-{topic}"), str::to_owned);
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

/// Waits until Kafka's tool shows every partition of the group at lag 0, with an owner;
/// returns its rows.
async fn wait_for_lag_zero(group: &str, partitions: usize, limit: Duration) -> Vec<testkit::GroupPartition> {
    let deadline = Instant::now() + limit;
    loop {
        let group_id = group.to_owned();
        let rows = tokio::task::spawn_blocking(move || testkit::describe_group(&group_id)).await.unwrap();
        if rows.len() == partitions
            && rows.iter().all(|r| r.lag == Some(0) && r.committed.is_some() && r.owner.is_some())
        {
            println!("kafka-consumer-groups --describe at the end: {rows:?}");
            return rows;
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

/// A free port on 127.0.0.1 for an instance's HTTP listener, so the test can ask it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `env` with the HTTP listener on `port`.
fn on_port(env: &[(String, String)], port: u16) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != "HTTP_ADDR").cloned().collect();
    env.push(("HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")));
    env
}

/// `GET path` of the instance on `port`: the status and the body (0 while it does not answer).
async fn get(port: u16, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://127.0.0.1:{port}{path}")).await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Waits until the instance on `port` answers `/readyz` with `status` and a body containing
/// `needle`; returns the body.
async fn wait_for_readiness(port: u16, status: u16, needle: &str, limit: Duration) -> String {
    testkit::eventually(limit, &format!("/readyz {status} with {needle:?}"), || async {
        let (got, body) = get(port, "/readyz").await;
        (got == status && body.contains(needle)).then_some(body)
    })
    .await
}

/// Two members of one group read different topics (a topic renamed during a migration, a
/// blue/green deployment, a group id shared by mistake): the leader assigns each topic
/// among its readers, both are read to the end, exactly once, both members are ready, and
/// Kafka's own tool shows every partition of both topics with an owner and lag 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_read_different_topics_in_one_group_each_read_their_whole_topic() {
    let mut old = Scenario::new("mixed-old", 2).await;
    let mut new = Scenario::in_group("mixed-new", 3, Some(&old.group)).await;
    let (log_a, log_b) = (old.log("a"), new.log("b"));
    let (port_a, port_b) = (free_port(), free_port());
    let limit = Duration::from_secs(60);

    let producing_old = Producing::start(&old.topic, 2, 400, Duration::from_millis(20), 1201);
    let producing_new = Producing::start(&new.topic, 3, 400, Duration::from_millis(20), 1202);
    let a = process::spawn(&on_port(&old.env, port_a), &log_a);
    wait_for_members(&old.group, &[2], limit).await;
    let b = process::spawn(&on_port(&new.env, port_b), &log_b);
    wait_for_members(&old.group, &[2, 3], limit).await;
    wait_for_readiness(port_a, 200, "committed up to", limit).await;
    wait_for_readiness(port_b, 200, "committed up to", limit).await;

    let (produced_old, produced_new) = (producing_old.finish().await, producing_new.finish().await);
    common::wait_until_caught_up(&old.config, 2, Duration::from_secs(120)).await;
    common::wait_until_caught_up(&new.config, 3, Duration::from_secs(120)).await;
    let rows = wait_for_lag_zero(&old.group, 5, limit).await;
    let mut topics: Vec<&str> = rows.iter().map(|r| r.topic.as_str()).collect();
    topics.dedup();
    let mut expected = vec![old.topic.as_str(), new.topic.as_str()];
    expected.sort_unstable();
    topics.sort_unstable();
    topics.dedup();
    assert_eq!(topics, expected, "{rows:?}");
    let group = old.group.clone();
    let table = tokio::task::spawn_blocking(move || testkit::consumer_groups_text(&group, &[])).await.unwrap();
    println!("kafka-consumer-groups.sh --describe of the mixed group:\n{table}");
    for port in [port_a, port_b] {
        let metrics = get(port, "/metrics").await.1;
        assert_eq!(testkit::metric(&metrics, "consumer_group_unowned_partitions", &[]), Some(0.0));
    }

    for instance in [a, b] {
        assert!(process::terminate(instance).await.success(), "an instance did not stop cleanly");
    }
    process::assert_exactly_once(&old.config, &produced_old, "the first topic of a mixed group").await;
    process::assert_exactly_once(&new.config, &produced_new, "the second topic of a mixed group").await;
}

/// What store-events consumers did before mixed-topic groups, played by the test: a member
/// that reads `topic`, leads the group (it joined first) and assigns only `topic`, until
/// `stop`; then it leaves.
async fn older_leader(group: String, topic: String, stop: CancellationToken) {
    let kafka = testkit::kafka();
    let partitions = kafka.partitions(&topic).await.unwrap().expect("the older leader's topic exists");
    let client = kafka.client().await.unwrap().group_client(group);
    let subscription = ConsumerSubscription { topics: vec![topic.clone()], user_data: None, owned_partitions: vec![] };
    let settings = JoinSettings {
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        group_instance_id: None,
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
        protocols: vec![(store_consumer::group::assignor::NAME.to_owned(), subscription.encode().unwrap())],
    };
    let mut member_id = String::new();
    loop {
        let joined = client.join(&member_id, &settings).await.expect("the older leader joins");
        member_id = joined.membership.member_id.clone();
        let assignments = joined
            .members
            .iter()
            .map(|m| {
                let own = m.member_id == member_id;
                let assigned_partitions = if own {
                    vec![TopicPartitions { topic: topic.clone(), partitions: partitions.clone() }]
                } else {
                    Vec::new()
                };
                (m.member_id.clone(), ConsumerAssignment { assigned_partitions, user_data: None }.encode().unwrap())
            })
            .collect();
        client.sync(&joined.membership, assignments).await.expect("the older leader syncs");
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    client.leave(&joined.membership).await.expect("the older leader leaves");
                    return;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if client.heartbeat(&joined.membership).await.is_err() {
                break; // a rebalance: join again
            }
        }
    }
}

/// A leader that assigns only its own topic leaves the member that reads another topic
/// with nothing: that member says it is not ready, naming the unowned partitions and the
/// leader, and counts them in `consumer_group_unowned_partitions`; when that leader
/// leaves, the member leads itself, reads its topic and is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_an_older_leader_leaves_without_partitions_is_not_ready_and_says_why() {
    let older = Scenario::new("older-leader", 2).await;
    let mut left_out = Scenario::in_group("left-out", 3, Some(&older.group)).await;
    let log = left_out.log("b");
    let port = free_port();
    let limit = Duration::from_secs(60);

    let stop = CancellationToken::new();
    let leader = tokio::spawn(older_leader(older.group.clone(), older.topic.clone(), stop.clone()));
    wait_for_members(&older.group, &[2], limit).await;
    let b = process::spawn(&on_port(&left_out.env, port), &log);
    let needle = format!("partitions 0, 1, 2 of topic {} have no owner", left_out.topic);
    let body = wait_for_readiness(port, 503, &needle, limit).await;
    println!("/readyz of the member left without partitions: {body}");
    assert!(body.contains("its leader, member "), "{body}");
    let metrics = get(port, "/metrics").await.1;
    assert_eq!(testkit::metric(&metrics, "consumer_group_unowned_partitions", &[]), Some(3.0));

    stop.cancel();
    leader.await.unwrap();
    wait_for_readiness(port, 200, "partition 2: resumed at offset 0", limit).await;
    let metrics = get(port, "/metrics").await.1;
    assert_eq!(testkit::metric(&metrics, "consumer_group_unowned_partitions", &[]), Some(0.0));
    assert!(process::terminate(b).await.success(), "the instance did not stop cleanly");
}

/// Kafka's console consumer (`kafka-console-consumer.sh --group`, the Java client's
/// classic protocol with its own assignors), from the broker's jars, reading `topic` in
/// `group`; its output goes to `log`. Its own process group, so that [`stop_group`] stops
/// the JVM behind the script.
fn console_consumer(topic: &str, group: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new("bash")
        .arg(testkit::repo_root().join("scripts/stack.sh"))
        .args([
            "kafka-tool",
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            testkit::kafka_address(),
            "--topic",
            topic,
            "--group",
            group,
            // The classic group protocol, as every Java consumer uses unless told otherwise.
            "--consumer-property",
            "group.protocol=classic",
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("kafka-console-consumer did not start")
}

/// SIGTERM to `child`'s process group, then waits for `child`.
fn stop_group(mut child: Child) {
    Command::new("kill").args(["-TERM", "--", &format!("-{}", child.id())]).status().unwrap();
    let _ = child.wait();
}

/// A group held by Kafka's console consumer refuses a store-events member (no common
/// assignment protocol): the member says so in its log and readiness, naming the console
/// consumer, and joins once it leaves. Then the other way round: a console consumer that
/// tries to join the store-events group is refused by the broker and the group carries on
/// in the same generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_java_consumers_refuses_a_member_with_a_clear_message_and_the_other_way_round() {
    let mut scenario = Scenario::new("foreign", 2).await;
    let (log, console_log, refused_log) =
        (scenario.log("ours"), scenario.log("console"), scenario.log("console-refused"));
    let port = free_port();
    let limit = Duration::from_secs(90);

    let console = console_consumer(&scenario.topic, &scenario.group, &console_log);
    let members = wait_for_members(&scenario.group, &[2], limit).await;
    assert!(members[0].client_id.starts_with("console-consumer"), "{members:?}");
    let ours = process::spawn(&on_port(&scenario.env, port), &log);
    let body = wait_for_readiness(port, 503, "the broker refused to let this instance join", limit).await;
    println!("/readyz while the console consumer holds the group: {body}");
    assert!(body.contains("console-consumer"), "{body}");
    assert!(body.contains("CONSUMER_GROUP_ID"), "{body}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Could not join the consumer group; retrying.") && text.contains("console-consumer"),
        "{text}"
    );

    stop_group(console);
    wait_for_readiness(port, 200, "", limit).await;
    let generation = last_generation(&log).expect("our instance joined once the console consumer left");

    let refused = console_consumer(&scenario.topic, &scenario.group, &refused_log);
    let said = testkit::eventually(limit, "the console consumer refused by the broker", || {
        let said = std::fs::read_to_string(&refused_log).unwrap_or_default();
        async move { said.contains("InconsistentGroupProtocolException").then_some(said) }
    })
    .await;
    stop_group(refused);
    println!(
        "kafka-console-consumer refused: {}",
        said.lines().find(|l| l.contains("InconsistentGroupProtocolException")).unwrap_or_default()
    );
    assert_eq!(last_generation(&log), Some(generation), "the refused join rebalanced the group");
    assert_eq!(get(port, "/readyz").await.0, 200);
    assert!(process::terminate(ours).await.success(), "the instance did not stop cleanly");
}

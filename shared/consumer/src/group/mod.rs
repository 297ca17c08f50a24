//! Membership of the consumer group (`CONSUMER_ASSIGNMENT=group`): the instances of a
//! service share the topic's partitions through the classic group protocol, which every
//! Kafka that Amazon MSK runs (3.6 to 4.x) serves, as Kafka's Java consumer does:
//!
//! 1. **join**: `JoinGroup` with this instance's subscription (the topic, and the
//!    partitions it owned in the last generation); the coordinator answers once every
//!    member has (re)joined. One member, the leader, gets everyone's subscriptions.
//! 2. **assign**: the leader spreads the partitions of every topic that some member reads
//!    over that topic's readers with the sticky [`assignor`] and sends every member's
//!    share with `SyncGroup`; the others get theirs from it. Each member then asks the
//!    coordinator who owns what ([`coverage`]): it is ready only if every partition of its
//!    topic has an owner, whoever led.
//! 3. **read**: the instance recovers each assigned partition from the ledger and reads
//!    it; a heartbeat every `CONSUMER_HEARTBEAT_INTERVAL` keeps it in the group and
//!    learns of a rebalance (a member came, went or missed its session timeout; the
//!    leader also starts one when the topic gains partitions); progress is committed to
//!    the group every second.
//! 4. **revoke**: on a rebalance, every partition commits its open batch to S3 and its
//!    progress to the group before the instance rejoins (the eager protocol): when the
//!    new generation starts, no old owner is still writing. A member that missed the
//!    rebalance (paused, cut off) and writes anyway is stopped by the ledger's
//!    `If-None-Match` fencing, counted in `consumer_fenced_total`.
//!
//! The ledger, not the group's committed offset, decides where a partition resumes, so
//! a rebalance cannot lose or double an event, whatever the timing.

pub mod assignor;
pub mod coverage;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::group::{
    CONSUMER_PROTOCOL_TYPE, ConsumerAssignment, ConsumerSubscription, DescribedMember, GroupClient, JoinSettings,
    Joined, Membership, TopicPartitions,
};
use service_runtime::kafka::{KafkaError, within};
use service_runtime::retry::Backoff;
use tokio::time::{MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;

use self::coverage::{Coverage, Seen};
use crate::offsets::Committer;
use crate::ownership::GroupSettings;
use crate::partition::Shared;
use crate::runner::{LoopEnded, Partitions};

/// Why the member stopped taking part in the group.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// A partition loop ended on its own.
    #[error(transparent)]
    Loop(#[from] LoopEnded),
    /// Another running instance has the same `CONSUMER_GROUP_INSTANCE_ID`.
    #[error(
        "another instance joined the group {group} with CONSUMER_GROUP_INSTANCE_ID={instance}: each instance \
         needs its own (a StatefulSet's pod name)"
    )]
    Fenced {
        /// The group.
        group: String,
        /// The instance id both use.
        instance: String,
    },
}

/// Why a join did not give this instance its partitions.
#[derive(Debug, thiserror::Error)]
enum JoinError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Protocol(String),
}

/// Why the member leaves its generation.
#[derive(Debug)]
enum Rejoin {
    /// The coordinator started a rebalance.
    Rebalance,
    /// The leader saw a topic's partitions change (the topic, its partitions now).
    PartitionsChanged(String, usize),
    /// The coordinator no longer knows this member (its session expired).
    Lost(String),
    /// The process is stopping.
    Shutdown,
}

/// Takes part in the group until `shutdown`: joins, reads the partitions it is given,
/// rejoins on every rebalance, and at the end commits, leaves (a dynamic member) and
/// returns.
pub async fn run(
    shared: Arc<Shared>,
    settings: GroupSettings,
    partitions: &mut Partitions,
    shutdown: CancellationToken,
) -> Result<(), MemberError> {
    let mut member = Member::new(Arc::clone(&shared), settings);
    let mut retry = Backoff::dependency();
    let mut rebalance_started = Instant::now();
    let outcome = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        shared.health.set_membership(Err(format!("joining the consumer group {}", shared.config.group_id)));
        let joined = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            joined = member.join() => joined,
        };
        let (membership, assigned) = match joined {
            Ok(joined) => joined,
            Err(error) => {
                if let Some(fenced) = member.fatal(&error) {
                    break Err(fenced);
                }
                let wait = retry.next_wait();
                let why = member.explain(&error).await;
                tracing::warn!(group = shared.config.group_id, error = why, retry_in = ?wait, "Could not join the consumer group; retrying.");
                shared.health.set_membership(Err(why));
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        retry.reset();
        let took = rebalance_started.elapsed();
        shared.metrics.rebalances.inc();
        shared.metrics.rebalance_seconds.observe(took.as_secs_f64());
        shared.metrics.generation.set(i64::from(membership.generation_id));
        shared.metrics.assigned_partitions.set(i64::try_from(assigned.len()).unwrap_or(i64::MAX));
        tracing::info!(
            group = shared.config.group_id,
            generation = membership.generation_id,
            member_id = membership.member_id,
            partitions = ?assigned,
            rebalance_seconds = took.as_secs_f64(),
            "Joined the consumer group."
        );
        // Until the coordinator says who owns the rest, a member without partitions is not
        // known to be idle for a good reason (see `coverage`).
        shared.health.set_membership(if assigned.is_empty() {
            Err(format!(
                "no partition assigned in generation {}: checking that other members own every partition of topic {}",
                membership.generation_id, shared.config.common.topic
            ))
        } else {
            Ok(format!("generation {}", membership.generation_id))
        });
        for &partition in &assigned {
            partitions.start(partition);
        }

        let why = match member.stay(&membership, partitions, &shutdown).await {
            Ok(why) => why,
            Err(ended) => {
                // Every other partition commits what it has before the process stops.
                shutdown.cancel();
                let _ = member.revoke(&membership, partitions).await;
                break Err(ended.into());
            }
        };
        rebalance_started = Instant::now();
        match &why {
            Rejoin::Shutdown => {}
            Rejoin::Rebalance => tracing::info!("The group is rebalancing; committing open batches, then rejoining."),
            Rejoin::PartitionsChanged(topic, count) => {
                tracing::info!(topic, partitions = count, "A topic's partitions changed; rebalancing the group.");
            }
            Rejoin::Lost(why) => tracing::warn!(why, "No longer a member of the group; rejoining."),
        }
        shared.health.set_membership(Err("rebalancing: committing open batches before rejoining".to_owned()));
        shared.metrics.assigned_partitions.set(0);
        if let Err(ended) = member.revoke(&membership, partitions).await {
            break Err(ended.into());
        }
        if matches!(why, Rejoin::Shutdown) {
            break Ok(());
        }
    };
    member.leave().await;
    outcome
}

/// This instance's side of the protocol.
struct Member {
    shared: Arc<Shared>,
    settings: GroupSettings,
    client: Option<Arc<GroupClient>>,
    /// The id the coordinator gave; empty before the first join and after it forgot us.
    member_id: String,
    /// The partitions of the last generation this member was in, and that generation.
    owned: Vec<i32>,
    generation: i32,
    /// The member id of the last generation's leader.
    leader: String,
    /// Each assigned topic's partition count when this member last led the assignment.
    leading: Option<BTreeMap<String, usize>>,
    /// The last readiness the coverage check gave, to log only its changes.
    coverage: Option<Result<String, String>>,
    committer: Committer,
}

impl Member {
    fn new(shared: Arc<Shared>, settings: GroupSettings) -> Member {
        let committer = Committer::new(
            Arc::clone(&shared.cluster),
            shared.config.group_id.clone(),
            shared.config.common.topic.clone(),
            shared.metrics.clone(),
        );
        Member {
            shared,
            settings,
            client: None,
            member_id: String::new(),
            owned: Vec::new(),
            generation: -1,
            leader: String::new(),
            leading: None,
            coverage: None,
            committer,
        }
    }

    fn topic(&self) -> &str {
        &self.shared.config.common.topic
    }

    async fn client(&mut self) -> Result<Arc<GroupClient>, KafkaError> {
        if let Some(client) = &self.client {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.shared.cluster.client().await?.group_client(self.shared.config.group_id.clone()));
        self.client = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The error that must stop the process rather than be retried.
    fn fatal(&self, error: &JoinError) -> Option<MemberError> {
        match error {
            JoinError::Kafka(error) if protocol_error(error) == Some(ProtocolError::FencedInstanceId) => {
                Some(MemberError::Fenced {
                    group: self.shared.config.group_id.clone(),
                    instance: self.settings.instance_id.clone().unwrap_or_default(),
                })
            }
            _ => None,
        }
    }

    /// Joins, assigns when leading, and gets this member's partitions.
    async fn join(&mut self) -> Result<(Membership, Vec<i32>), JoinError> {
        let outcome = self.join_and_sync().await;
        if let Err(JoinError::Kafka(error)) = &outcome {
            match protocol_error(error) {
                // The coordinator forgot this member (its session expired): join as new.
                Some(ProtocolError::UnknownMemberId) => self.member_id.clear(),
                Some(
                    ProtocolError::RebalanceInProgress
                    | ProtocolError::IllegalGeneration
                    | ProtocolError::InconsistentGroupProtocol,
                ) => {}
                _ => self.client = None,
            }
        }
        outcome
    }

    async fn join_and_sync(&mut self) -> Result<(Membership, Vec<i32>), JoinError> {
        let client = self.client().await?;
        let topic = self.topic().to_owned();
        let subscription = ConsumerSubscription {
            topics: vec![topic.clone()],
            user_data: Some(self.generation.to_be_bytes().to_vec()),
            owned_partitions: vec![TopicPartitions { topic: topic.clone(), partitions: self.owned.clone() }],
        }
        .encode()
        .map_err(|e| JoinError::Protocol(format!("cannot write the subscription: {e}")))?;
        let join = JoinSettings {
            session_timeout: self.settings.session_timeout,
            rebalance_timeout: self.settings.rebalance_timeout,
            group_instance_id: self.settings.instance_id.clone(),
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            protocols: vec![(assignor::NAME.to_owned(), subscription)],
        };
        // The coordinator answers once every member rejoined: up to the rebalance timeout.
        let wait = self.settings.rebalance_timeout + self.shared.cluster.settings().request_timeout;
        let joined = within(wait, "joining the consumer group", client.join(&self.member_id, &join)).await?;
        self.member_id = joined.membership.member_id.clone();
        self.leader = joined.leader.clone();
        let assignments = if joined.is_leader() { self.lead(&joined).await? } else { Vec::new() };
        let timeout = self.shared.cluster.settings().request_timeout;
        let bytes = within(timeout, "getting the assignment", client.sync(&joined.membership, assignments)).await?;
        let assignment = ConsumerAssignment::decode(&bytes)
            .map_err(|e| JoinError::Protocol(format!("the leader's assignment cannot be read: {e}")))?;
        let mut mine: Vec<i32> = assignment
            .assigned_partitions
            .into_iter()
            .filter(|tp| tp.topic == topic)
            .flat_map(|tp| tp.partitions)
            .collect();
        mine.sort_unstable();
        mine.dedup();
        self.owned = mine.clone();
        self.generation = joined.membership.generation_id;
        Ok((joined.membership, mine))
    }

    /// The leader's part: every member's share of the partitions of the topics it reads,
    /// encoded. A topic that does not exist, or that this instance may not describe, is
    /// assigned to nobody (its readers say so in their readiness); this instance's own
    /// topic must be described.
    async fn lead(&mut self, joined: &Joined) -> Result<Vec<(String, Vec<u8>)>, JoinError> {
        let mut subscriptions = Vec::new();
        for member in &joined.members {
            let subscription = ConsumerSubscription::decode(&member.metadata).map_err(|e| {
                JoinError::Protocol(format!("member {}'s subscription cannot be read: {e}", member.member_id))
            })?;
            let generation = subscription
                .user_data
                .as_deref()
                .and_then(|d| <[u8; 4]>::try_from(d).ok())
                .map_or(-1, i32::from_be_bytes);
            let mut owned: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in subscription.owned_partitions {
                owned.entry(tp.topic).or_default().extend(tp.partitions);
            }
            subscriptions.push(assignor::Subscription {
                member: member.member_id.clone(),
                topics: subscription.topics,
                owned,
                generation,
            });
        }
        let topics: BTreeSet<String> = subscriptions.iter().flat_map(|s| s.topics.iter().cloned()).collect();
        let mut partitions = BTreeMap::new();
        for topic in topics {
            match self.shared.cluster.partitions(&topic).await {
                Ok(Some(found)) => {
                    partitions.insert(topic, found);
                }
                Ok(None) if topic == self.topic() => {
                    return Err(JoinError::Protocol(format!("the topic {topic} does not exist")));
                }
                Err(error) if topic == self.topic() => return Err(error.into()),
                outcome => {
                    let why = outcome.err().map_or_else(|| "it does not exist".to_owned(), |e| e.to_string());
                    tracing::warn!(
                        topic,
                        why,
                        "A member of the group reads a topic that cannot be assigned; nobody reads it."
                    );
                }
            }
        }
        let shares = assignor::assign_topics(&subscriptions, &partitions);
        tracing::info!(members = joined.members.len(), topics = ?partitions.keys().collect::<Vec<_>>(), assignment = ?shares, "Leading the group: assigned its topics' partitions.");
        self.leading = Some(partitions.iter().map(|(topic, p)| (topic.clone(), p.len())).collect());
        let mut assignments = Vec::new();
        for (member, share) in shares {
            let assigned_partitions =
                share.into_iter().map(|(topic, partitions)| TopicPartitions { topic, partitions }).collect();
            let bytes = ConsumerAssignment { assigned_partitions, user_data: None }
                .encode()
                .map_err(|e| JoinError::Protocol(format!("cannot write an assignment: {e}")))?;
            assignments.push((member, bytes));
        }
        Ok(assignments)
    }

    /// Asks the coordinator who owns what in the group, and records this member's
    /// readiness and the unowned partitions of its topic. `false` when it could not tell
    /// (the group is rebalancing again, or the coordinator did not answer): ask again soon.
    async fn check_coverage(&mut self, membership: &Membership) -> bool {
        let topic = self.topic().to_owned();
        let timeout = self.shared.cluster.settings().request_timeout;
        let described = match self.client().await {
            Ok(client) => within(timeout, "describing the consumer group", client.describe()).await,
            Err(error) => Err(error),
        };
        let group = match described {
            Ok(group) if group.state == "Stable" => group,
            Ok(_) => return false,
            Err(error) => {
                tracing::debug!(%error, "Could not describe the consumer group; checking again soon.");
                return false;
            }
        };
        let partitions = match self.shared.cluster.partitions(&topic).await {
            Ok(partitions) => partitions.unwrap_or_default(),
            Err(_) => return false,
        };
        let seen: Vec<Seen> = group.members.iter().map(|m| seen(m, &topic)).collect();
        let coverage = Coverage::of(&topic, &partitions, &seen);
        self.shared.metrics.unowned_partitions.set(i64::try_from(coverage.unowned.len()).unwrap_or(i64::MAX));
        let leader = seen.iter().find(|m| m.member_id == self.leader);
        let verdict =
            coverage.verdict(&self.shared.config.group_id, &topic, membership.generation_id, &self.owned, leader);
        if self.coverage.as_ref() != Some(&verdict) {
            match &verdict {
                Err(why) => tracing::warn!(why, "Partitions of this instance's topic are not read by the group."),
                Ok(state) => tracing::info!(state, "Every partition of this instance's topic has an owner."),
            }
        }
        self.shared.health.set_membership(verdict.clone());
        self.coverage = Some(verdict);
        true
    }

    /// What a failed join means to an operator. A group held by consumers that assign with
    /// another protocol (Kafka's Java consumer, kcat, `kafka-console-consumer.sh --group`)
    /// refuses this member until they leave; the message names them.
    async fn explain(&mut self, error: &JoinError) -> String {
        let refused =
            matches!(error, JoinError::Kafka(e) if protocol_error(e) == Some(ProtocolError::InconsistentGroupProtocol));
        if !refused {
            return format!("cannot join the consumer group: {error}");
        }
        let timeout = self.shared.cluster.settings().request_timeout;
        let holders = match self.client().await {
            Ok(client) => within(timeout, "describing the consumer group", client.describe()).await.ok(),
            Err(_) => None,
        };
        let holders = holders.map_or_else(
            || "consumers of another kind".to_owned(),
            |group| {
                let members: Vec<String> =
                    group.members.iter().map(|m| format!("client {} at {}", m.client_id, m.client_host)).collect();
                format!("{} member(s) assigning with {:?} ({})", members.len(), group.protocol, members.join(", "))
            },
        );
        format!(
            "the broker refused to let this instance join the consumer group {}: it is held by {holders}, and a \
             group's members must share an assignment protocol (store-events consumers use {:?}). Give this \
             service a CONSUMER_GROUP_ID of its own, or stop the other consumers; retrying until they leave",
            self.shared.config.group_id,
            assignor::NAME
        )
    }

    /// Heartbeats and commits progress until the generation ends for this member.
    async fn stay(
        &mut self,
        membership: &Membership,
        partitions: &mut Partitions,
        shutdown: &CancellationToken,
    ) -> Result<Rejoin, LoopEnded> {
        let leading = self.leading.take();
        let every = |period: Duration| {
            let mut ticks = interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        };
        let mut heartbeat = every(self.settings.heartbeat_interval);
        let mut commit = every(crate::offsets::INTERVAL);
        let mut refresh = every(self.shared.config.partition_refresh);
        // Who owns what: asked at once, then at every refresh; soon again when the
        // coordinator could not tell (still rebalancing).
        let mut check_at = tokio::time::Instant::now();
        let mut answered = Instant::now();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(Rejoin::Shutdown),
                ended = partitions.ended() => return Err(ended),
                _ = heartbeat.tick() => {
                    let outcome = self.heartbeat(membership).await;
                    match outcome.as_ref().err().and_then(protocol_error) {
                        None if outcome.is_ok() => {
                            answered = Instant::now();
                            if failing {
                                tracing::info!("Heartbeats are answered again.");
                                failing = false;
                            }
                        }
                        Some(ProtocolError::RebalanceInProgress) => return Ok(Rejoin::Rebalance),
                        Some(ProtocolError::UnknownMemberId) => {
                            self.member_id.clear();
                            return Ok(Rejoin::Lost("the coordinator no longer knows this member".to_owned()));
                        }
                        Some(ProtocolError::IllegalGeneration) => {
                            return Ok(Rejoin::Lost("the group moved on to a later generation".to_owned()));
                        }
                        Some(ProtocolError::FencedInstanceId) => {
                            return Ok(Rejoin::Lost("another instance took this CONSUMER_GROUP_INSTANCE_ID".to_owned()));
                        }
                        _ => {
                            self.client = None;
                            if !failing {
                                if let Err(error) = &outcome {
                                    tracing::warn!(%error, "A heartbeat failed; trying again.");
                                }
                                failing = true;
                            }
                            if answered.elapsed() >= self.settings.session_timeout {
                                return Ok(Rejoin::Lost(format!(
                                    "no heartbeat answered for {:?}, the session timeout", self.settings.session_timeout
                                )));
                            }
                        }
                    }
                }
                _ = commit.tick() => {
                    self.committer.commit(Some(membership), self.shared.progress.snapshot()).await;
                }
                _ = sleep_until(check_at) => {
                    let wait = if self.check_coverage(membership).await {
                        self.shared.config.partition_refresh
                    } else {
                        Duration::from_secs(1)
                    };
                    check_at = tokio::time::Instant::now() + wait;
                }
                _ = refresh.tick(), if leading.is_some() => {
                    for (topic, &count) in leading.iter().flatten() {
                        if let Ok(Some(now)) = self.shared.cluster.partitions(topic).await
                            && now.len() != count
                        {
                            return Ok(Rejoin::PartitionsChanged(topic.clone(), now.len()));
                        }
                    }
                }
            }
        }
    }

    async fn heartbeat(&mut self, membership: &Membership) -> Result<(), KafkaError> {
        let client = self.client().await?;
        within(self.shared.cluster.settings().request_timeout, "heartbeat", client.heartbeat(membership)).await
    }

    /// Stops every partition (each commits its open batch), heartbeating meanwhile so that
    /// a slow commit does not cost the membership, then commits their progress to the
    /// group as this generation, the last time this member may.
    async fn revoke(&mut self, membership: &Membership, partitions: &mut Partitions) -> Result<(), LoopEnded> {
        let stopped = {
            let stopping = partitions.stop_all();
            tokio::pin!(stopping);
            let mut heartbeat = tokio::time::interval(self.settings.heartbeat_interval);
            loop {
                tokio::select! {
                    stopped = &mut stopping => break stopped,
                    _ = heartbeat.tick() => { let _ = self.heartbeat(membership).await; }
                }
            }
        };
        // Progress holds only this generation's partitions: it is cleared at each revoke.
        self.committer.commit(Some(membership), self.shared.progress.snapshot()).await;
        self.shared.progress.clear();
        self.committer.forget();
        stopped
    }

    /// A dynamic member leaves, so that the group rebalances now rather than after its
    /// session timeout. A static member stays: restarted within the session timeout, it
    /// gets its partitions back without a rebalance.
    async fn leave(&mut self) {
        if self.settings.instance_id.is_some() || self.member_id.is_empty() {
            return;
        }
        let membership =
            Membership { generation_id: self.generation, member_id: self.member_id.clone(), group_instance_id: None };
        let timeout = self.shared.cluster.settings().request_timeout;
        let outcome = match self.client().await {
            Ok(client) => within(timeout, "leaving the consumer group", client.leave(&membership)).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => tracing::info!(group = self.shared.config.group_id, "Left the consumer group."),
            Err(error) => {
                tracing::warn!(%error, "Could not leave the consumer group; it rebalances after the session timeout.")
            }
        }
    }
}

/// The protocol error behind a Kafka error, if it is one.
fn protocol_error(error: &KafkaError) -> Option<ProtocolError> {
    match error {
        KafkaError::Client { source: ClientError::ServerError { protocol_error, .. }, .. } => Some(*protocol_error),
        _ => None,
    }
}

/// A described member as the coverage check reads it: its subscription and its share of
/// `topic` (empty when its metadata is not the consumer protocol's).
fn seen(member: &DescribedMember, topic: &str) -> Seen {
    let topics = ConsumerSubscription::decode(&member.metadata).map(|s| s.topics).unwrap_or_default();
    let owns = ConsumerAssignment::decode(&member.assignment)
        .map(|a| {
            a.assigned_partitions.into_iter().filter(|tp| tp.topic == topic).flat_map(|tp| tp.partitions).collect()
        })
        .unwrap_or_default();
    Seen {
        member_id: member.member_id.clone(),
        client_id: member.client_id.clone(),
        client_host: member.client_host.clone(),
        topics,
        owns,
    }
}

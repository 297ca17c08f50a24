//! Committed offsets for the ecosystem. The ledger in S3 decides where a partition
//! resumes; Kafka's tools, lag exporters, KEDA and Amazon MSK's consumer-lag metrics know
//! only a consumer group's committed offsets. So the progress the ledger makes durable is
//! committed to the group `CONSUMER_GROUP_ID` too, about once a second and once more when
//! partitions are released: as a member of the current generation in group assignment
//! (see `group/`), as a consumer outside the group protocol (generation -1) in static
//! assignment. A commit that fails is counted and logged, and tried again with the next:
//! it never holds up the pipeline, and the committed offset is never ahead of the ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::group::{GroupClient, Membership};
use service_runtime::kafka::{KafkaCluster, KafkaError, within};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often progress is committed.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The next offset of each partition, as the ledger has it.
#[derive(Debug, Default)]
pub struct Progress {
    next: Mutex<BTreeMap<i32, i64>>,
}

impl Progress {
    /// The ledger accounts for every offset of `partition` before `next`.
    pub fn set(&self, partition: i32, next: i64) {
        if let Ok(mut offsets) = self.next.lock() {
            offsets.insert(partition, next);
        }
    }

    /// Every partition's next offset.
    pub fn snapshot(&self) -> BTreeMap<i32, i64> {
        self.next.lock().map(|offsets| offsets.clone()).unwrap_or_default()
    }

    /// Forgets every partition (they were released to other members).
    pub fn clear(&self) {
        if let Ok(mut offsets) = self.next.lock() {
            offsets.clear();
        }
    }
}

/// Commits `progress` on `topic` to `group` as a consumer outside the group protocol
/// (static assignment) until `stop`, then once more.
pub async fn commit_until(
    cluster: Arc<KafkaCluster>,
    group: String,
    topic: String,
    progress: Arc<Progress>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut committer = Committer::new(cluster, group, topic, metrics);
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(INTERVAL) => false,
        };
        committer.commit(None, progress.snapshot()).await;
        if stopping {
            break;
        }
    }
}

/// Commits progress to the group, skipping what it committed already.
pub struct Committer {
    cluster: Arc<KafkaCluster>,
    group: String,
    topic: String,
    metrics: Metrics,
    client: Option<Arc<GroupClient>>,
    committed: BTreeMap<i32, i64>,
    failing: bool,
}

impl Committer {
    /// A committer for `topic`'s offsets in `group`.
    pub fn new(cluster: Arc<KafkaCluster>, group: String, topic: String, metrics: Metrics) -> Committer {
        Committer { cluster, group, topic, metrics, client: None, committed: BTreeMap::new(), failing: false }
    }

    /// Forgets what was committed (the partitions went to other members, who commit them).
    pub fn forget(&mut self) {
        self.committed.clear();
    }

    /// Commits the offsets of `latest` that changed, as `member` of the group's current
    /// generation or, with `None`, outside the group protocol.
    pub async fn commit(&mut self, member: Option<&Membership>, latest: BTreeMap<i32, i64>) {
        let pending: Vec<(i32, i64)> =
            latest.into_iter().filter(|(partition, next)| self.committed.get(partition) != Some(next)).collect();
        if pending.is_empty() {
            return;
        }
        let timeout = self.cluster.settings().request_timeout;
        let outcome: Result<(), KafkaError> = async {
            let client = match &self.client {
                Some(client) => Arc::clone(client),
                None => {
                    let client = Arc::new(self.cluster.client().await?.group_client(self.group.clone()));
                    self.client = Some(Arc::clone(&client));
                    client
                }
            };
            within(
                timeout,
                "committing offsets to the consumer group",
                client.commit_offsets_as(member, &self.topic, &pending),
            )
            .await
        }
        .await;
        match outcome {
            Ok(()) => {
                self.metrics.offset_commits.with_label_values(&["ok"]).inc();
                if self.failing {
                    tracing::info!(group = self.group, "Offsets are committed to the consumer group again.");
                    self.failing = false;
                }
                self.committed.extend(pending);
            }
            Err(error) => {
                self.metrics.offset_commits.with_label_values(&["error"]).inc();
                // Once per outage: a commit is tried every second.
                if !self.failing {
                    tracing::warn!(
                        group = self.group,
                        %error,
                        "Offsets could not be committed to the consumer group (lag tools show old offsets; \
                         nothing is lost: the ledger is the consumer's position). Trying again."
                    );
                    self.failing = true;
                }
                self.client = None;
            }
        }
    }
}

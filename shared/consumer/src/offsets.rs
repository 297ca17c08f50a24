//! Committed offsets for the ecosystem. The ledger in S3 decides where a partition
//! resumes; Kafka's tools, lag exporters, KEDA and Amazon MSK's consumer-lag metrics know
//! only a consumer group's committed offsets. So the progress the ledger makes durable is
//! committed to the group `CONSUMER_GROUP_ID` too, as a consumer outside the group
//! protocol (generation -1), about once a second and once more at shutdown. A commit
//! that fails is counted and logged, and tried again with the next: it never holds up
//! the pipeline, and the committed offset is never ahead of the ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::group::GroupClient;
use service_runtime::kafka::{KafkaCluster, KafkaError, within};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often progress is committed.
const INTERVAL: Duration = Duration::from_secs(1);

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

    fn snapshot(&self) -> BTreeMap<i32, i64> {
        self.next.lock().map(|offsets| offsets.clone()).unwrap_or_default()
    }
}

/// Commits `progress` on `topic` to `group` until `stop`, then once more.
pub async fn commit_until(
    cluster: Arc<KafkaCluster>,
    group: String,
    topic: String,
    progress: Arc<Progress>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut committer =
        Committer { cluster, group, topic, metrics, client: None, committed: BTreeMap::new(), failing: false };
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(INTERVAL) => false,
        };
        committer.commit(progress.snapshot()).await;
        if stopping {
            break;
        }
    }
}

struct Committer {
    cluster: Arc<KafkaCluster>,
    group: String,
    topic: String,
    metrics: Metrics,
    client: Option<Arc<GroupClient>>,
    committed: BTreeMap<i32, i64>,
    failing: bool,
}

impl Committer {
    async fn commit(&mut self, latest: BTreeMap<i32, i64>) {
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
            within(timeout, "committing offsets to the consumer group", client.commit_offsets(&self.topic, &pending))
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

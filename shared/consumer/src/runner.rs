//! The partitions this instance is reading right now: one task each, started when a
//! partition is assigned and stopped (its open batch committed, or left for recovery when
//! S3 is down) when it is revoked or at shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::partition::{self, Shared};

/// A partition loop ended without being asked to: it panicked (or returned early). The
/// process stops, so that its supervisor restarts it and recovery runs, instead of living
/// on with a partition nobody reads.
#[derive(Debug, thiserror::Error)]
#[error("the loop of partition {partition} {why} while the consumer was running")]
pub struct LoopEnded {
    /// The partition.
    pub partition: i32,
    /// `panicked` or `stopped`.
    pub why: &'static str,
}

/// The running partition loops.
pub struct Partitions {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    running: BTreeMap<i32, (Id, CancellationToken)>,
    tasks: JoinSet<()>,
}

impl Partitions {
    /// No partition yet; loops started later end at `shutdown` at the latest.
    pub fn new(shared: Arc<Shared>, shutdown: CancellationToken) -> Partitions {
        Partitions { shared, shutdown, running: BTreeMap::new(), tasks: JoinSet::new() }
    }

    /// The partitions being read.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.running.keys().copied().collect()
    }

    /// Starts reading `partition` (recovery first), unless it is read already.
    pub fn start(&mut self, partition: i32) {
        if self.running.contains_key(&partition) {
            return;
        }
        tracing::info!(partition, "Partition assigned.");
        let stop = self.shutdown.child_token();
        let handle = self.tasks.spawn(partition::run_partition(Arc::clone(&self.shared), partition, stop.clone()));
        self.running.insert(partition, (handle.id(), stop));
    }

    /// Stops every partition loop and waits until each has committed its open batch (or
    /// given up on it after one last attempt, S3 failing: recovery then rebuilds it).
    pub async fn stop_all(&mut self) -> Result<(), LoopEnded> {
        let mut failure = None;
        for (_, stop) in self.running.values() {
            stop.cancel();
        }
        while let Some(ended) = self.tasks.join_next_with_id().await {
            if let Err(error) = &ended
                && error.is_panic()
            {
                let partition = self.partition_of(error.id()).unwrap_or(-1);
                failure.get_or_insert(LoopEnded { partition, why: "panicked" });
            }
        }
        for partition in std::mem::take(&mut self.running).into_keys() {
            self.shared.forget(partition);
            tracing::info!(partition, "Partition released.");
        }
        failure.map_or(Ok(()), Err)
    }

    /// Resolves when a partition loop ends though nobody stopped it; never while none runs.
    pub async fn ended(&mut self) -> LoopEnded {
        loop {
            let Some(ended) = self.tasks.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (id, why) = match ended {
                Ok((id, ())) => (id, "stopped"),
                Err(error) => (error.id(), if error.is_panic() { "panicked" } else { "stopped" }),
            };
            let Some(partition) = self.partition_of(id) else {
                continue;
            };
            if self.running[&partition].1.is_cancelled() {
                continue;
            }
            self.running.remove(&partition);
            return LoopEnded { partition, why };
        }
    }

    /// The partition whose loop is task `id`.
    fn partition_of(&self, id: Id) -> Option<i32> {
        self.running.iter().find(|(_, (task, _))| *task == id).map(|(partition, _)| *partition)
    }
}

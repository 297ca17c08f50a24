//! Readiness of the pipeline: every partition this instance owns records its state here
//! (recovering, committed up to an offset, failing and why), the group member its own
//! (joining, rebalancing, idle), and the `pipeline` check summarizes them. An instance
//! that owns nothing is not ready while it joins or rebalances, and ready only when the
//! coordinator shows other members owning every partition of its topic: it says it is
//! idle (see `group::coverage`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use service_runtime::readiness::Check;

/// Per-partition progress, behind the `pipeline` readiness check.
#[derive(Default)]
pub struct Health {
    states: Mutex<BTreeMap<i32, Result<String, String>>>,
    membership: Mutex<Option<Result<String, String>>>,
}

impl Health {
    /// Records the state of `partition`.
    pub fn set(&self, partition: i32, state: Result<String, String>) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(partition, state);
        }
    }

    /// Forgets `partition` (released to another member).
    pub fn forget(&self, partition: i32) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(&partition);
        }
    }

    /// Records the state of this instance's membership of the consumer group.
    pub fn set_membership(&self, state: Result<String, String>) {
        if let Ok(mut membership) = self.membership.lock() {
            *membership = Some(state);
        }
    }

    /// Every partition's state in one line; `Err` naming the failing ones when any fails,
    /// or the membership's when it is joining or rebalancing.
    pub fn summary(&self) -> Result<String, String> {
        let membership = self.membership.lock().map_err(|_| "state unavailable".to_owned())?.clone();
        if let Some(Err(why)) = membership {
            return Err(why);
        }
        let states = self.states.lock().map_err(|_| "state unavailable".to_owned())?;
        if states.is_empty() {
            return match membership {
                Some(Ok(idle)) => Ok(idle),
                _ => Err("no partition assigned yet".to_owned()),
            };
        }
        let describe = |(p, s): (&i32, &String)| format!("partition {p}: {s}");
        let failing: Vec<String> =
            states.iter().filter_map(|(p, s)| s.as_ref().err().map(|s| describe((p, s)))).collect();
        if failing.is_empty() {
            Ok(states
                .iter()
                .filter_map(|(p, s)| s.as_ref().ok().map(|s| describe((p, s))))
                .collect::<Vec<_>>()
                .join("; "))
        } else {
            Err(failing.join("; "))
        }
    }
}

/// Readiness: every owned partition is making durable progress.
pub struct PipelineCheck(pub Arc<Health>);

impl Check for PipelineCheck {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        let summary = self.0.summary();
        Box::pin(async move { summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_ready_when_every_partition_is_or_when_it_is_idle_in_a_settled_group() {
        let health = Health::default();
        assert_eq!(health.summary(), Err("no partition assigned yet".to_owned()));
        health.set_membership(Err("joining the consumer group g".to_owned()));
        assert_eq!(health.summary(), Err("joining the consumer group g".to_owned()));
        health.set_membership(Ok("idle: the group g has more members than the topic has partitions".to_owned()));
        assert!(health.summary().is_ok_and(|s| s.starts_with("idle")));
        health.set_membership(Ok("generation 3".to_owned()));
        health.set(1, Ok("committed up to 7".to_owned()));
        health.set(0, Err("recovering".to_owned()));
        assert_eq!(health.summary(), Err("partition 0: recovering".to_owned()));
        health.forget(0);
        assert_eq!(health.summary(), Ok("partition 1: committed up to 7".to_owned()));
        health.set_membership(Err("rebalancing".to_owned()));
        assert_eq!(health.summary(), Err("rebalancing".to_owned()));
    }
}

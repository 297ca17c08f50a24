//! Readiness of the pipeline: every partition this instance owns records its state here
//! (recovering, committed up to an offset, failing and why), and the `pipeline` check
//! summarizes them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use service_runtime::readiness::Check;

/// Per-partition progress, behind the `pipeline` readiness check.
#[derive(Default)]
pub struct Health {
    states: Mutex<BTreeMap<i32, Result<String, String>>>,
}

impl Health {
    /// Records the state of `partition`.
    pub fn set(&self, partition: i32, state: Result<String, String>) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(partition, state);
        }
    }

    /// Every partition's state in one line; `Err` naming the failing ones when any fails.
    pub fn summary(&self) -> Result<String, String> {
        let states = self.states.lock().map_err(|_| "state unavailable".to_owned())?;
        if states.is_empty() {
            return Err("no partition assigned yet".to_owned());
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

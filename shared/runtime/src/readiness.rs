//! Readiness: a set of named checks of the service's dependencies, run together with a
//! bounded time each. `/readyz` answers 200 only when all pass, and its body names every
//! check and its state so that an operator sees at once which dependency is down.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use prometheus::{IntGaugeVec, Opts, Registry};
use serde::Serialize;

/// One dependency check, e.g. "Kafka answers metadata requests".
pub trait Check: Send + Sync {
    /// A short stable name, e.g. `kafka`; also the `check` label of `service_check_up`.
    fn name(&self) -> &'static str;
    /// `Ok(detail)` when the dependency is usable, `Err(reason)` otherwise.
    fn check(&self) -> BoxFuture<'_, Result<String, String>>;
}

/// The state of one check in the `/readyz` body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckState {
    /// The check's name.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What it found, or why it failed.
    pub detail: String,
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Every check, in registration order.
    pub checks: Vec<CheckState>,
}

impl Report {
    /// Whether every check passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The checks of one service.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<Arc<dyn Check>>,
    timeout: Duration,
    up: IntGaugeVec,
}

impl Readiness {
    /// An empty set; each check gets at most `timeout`. Registers `service_check_up`.
    pub fn new(registry: &Registry, timeout: Duration) -> Readiness {
        let up = crate::metrics::registered(
            registry,
            IntGaugeVec::new(
                Opts::new("service_check_up", "1 when the named readiness check passed at its last run, else 0."),
                &["check"],
            ),
        );
        Readiness { checks: Vec::new(), timeout, up }
    }

    /// Adds a check.
    pub fn with(mut self, check: impl Check + 'static) -> Readiness {
        self.checks.push(Arc::new(check));
        self
    }

    /// Runs every check concurrently and reports.
    pub async fn report(&self) -> Report {
        let runs = self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(self.timeout, check.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            };
            let ok = outcome.is_ok();
            self.up.with_label_values(&[check.name()]).set(i64::from(ok));
            CheckState { name: check.name(), ok, detail: outcome.unwrap_or_else(|e| e) }
        });
        let checks = join_all(runs).await;
        let status = if checks.iter().all(|c| c.ok) { "ready" } else { "not_ready" };
        Report { status, checks }
    }
}

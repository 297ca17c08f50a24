//! One retry policy for every loop that waits for Kafka or S3 to come back: `backon`'s
//! exponential backoff with jitter. The first wait is `first`; each next one doubles, up
//! to `longest`; and each is stretched by a random 0 to 100 %, so that instances that failed
//! together do not all retry together (so a wait is at most twice `longest`). The loops
//! never give up by themselves: shutdown ends them.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The waits between the attempts of one retry loop.
#[derive(Debug)]
pub struct Backoff {
    policy: ExponentialBuilder,
    waits: ExponentialBackoff,
    longest: Duration,
}

impl Backoff {
    /// Waits from `first`, doubling to `longest`, each stretched by up to 100 % at random.
    pub fn new(first: Duration, longest: Duration) -> Backoff {
        let policy = ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(longest)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff { waits: policy.build(), policy, longest }
    }

    /// Kafka or S3 unreachable from a service: 200 ms, doubling to 10 s.
    pub fn dependency() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        self.waits.next().unwrap_or(self.longest)
    }

    /// Starts again from the first wait (after a success).
    pub fn reset(&mut self) {
        self.waits = self.policy.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_longest_each_stretched_by_at_most_itself() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
        let bases = [100, 200, 400, 800, 800, 800, 800, 800].map(Duration::from_millis);
        for (wait, base) in waits.iter().zip(bases) {
            assert!(*wait >= base && *wait < base * 2, "{wait:?} is not in [{base:?}, {:?})", base * 2);
        }
    }

    #[test]
    fn reset_starts_again_from_the_first_wait() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..5 {
            backoff.next_wait();
        }
        backoff.reset();
        let wait = backoff.next_wait();
        assert!(wait >= Duration::from_millis(100) && wait < Duration::from_millis(200), "{wait:?}");
    }

    #[test]
    fn it_never_runs_out() {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        assert!((0..10_000).all(|_| backoff.next_wait() <= Duration::from_millis(4)));
    }
}

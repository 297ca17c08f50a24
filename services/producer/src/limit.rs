//! Rate limits per principal: a token bucket of events per second, refilled continuously,
//! that a request may overdraw (a batch larger than a second's worth still goes through
//! when the bucket is not in debt), so that the average rate is bounded without refusing
//! big batches outright. A principal in debt gets 429 with the seconds until it is not.
//! One bucket per principal: a flood from one store does not slow the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The buckets, by principal name.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Events that may still be sent now; negative while in debt.
    tokens: f64,
    updated: Instant,
}

impl Limiter {
    /// Takes `events` from `principal`'s bucket, which holds at most `rate` (events per
    /// second) and refills at that rate: `Ok(())`, or `Err(wait)` when the principal is in
    /// debt, `wait` being how long until it is not. Taking 0 events asks only whether the
    /// principal is in debt (before a request's body is read).
    pub fn take(&self, principal: &str, rate: f64, events: usize, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(principal.to_owned()).or_insert(Bucket { tokens: rate, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens < 0.0 {
            return Err(Duration::from_secs_f64(-bucket.tokens / rate));
        }
        bucket.tokens -= events as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_over_its_rate_waits_and_the_others_do_not() {
        let limiter = Limiter::default();
        let start = Instant::now();
        // 100 events/s: a batch of 250 overdraws the bucket by 150 (allowed once)...
        assert_eq!(limiter.take("flood", 100.0, 250, start), Ok(()));
        // ...and the next request waits the 1.5 s it takes to pay that back.
        let wait = limiter.take("flood", 100.0, 1, start).unwrap_err();
        assert!((wait.as_secs_f64() - 1.5).abs() < 1e-9, "{wait:?}");
        // Another principal is not affected.
        assert_eq!(limiter.take("quiet", 100.0, 10, start), Ok(()));
        // After 1 s the debt is 50: still 0.5 s to go; after 1.5 s it is paid.
        let wait = limiter.take("flood", 100.0, 1, start + Duration::from_secs(1)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert_eq!(limiter.take("flood", 100.0, 1, start + Duration::from_millis(1500)), Ok(()));
    }

    #[test]
    fn the_bucket_holds_at_most_one_second_of_events() {
        let limiter = Limiter::default();
        let start = Instant::now();
        assert_eq!(limiter.take("store", 10.0, 1, start), Ok(()));
        // An hour idle earns no more than 10 events of credit: 10 + 11 overdraws by 11.
        let later = start + Duration::from_secs(3600);
        assert_eq!(limiter.take("store", 10.0, 21, later), Ok(()));
        let wait = limiter.take("store", 10.0, 1, later).unwrap_err();
        assert!((wait.as_secs_f64() - 1.1).abs() < 1e-9, "{wait:?}");
    }
}

//! The memory and CPU of one partition's resend window ([`Seen`]) on its own: identities
//! stored in batches until the window holds `--ids` (DEDUP_MAX_IDS), then as many again
//! while the oldest batches are forgotten (the steady state of a busy partition), with one
//! resend in every hundred events. Prints the process's peak and current RSS over an empty
//! start (VmHWM, VmRSS) per identity remembered, and nanoseconds per event.
//!
//! ```sh
//! cargo run --release -p store-consumer --example dedup_window -- --ids 1000000 --batch 10000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measuring tool: a panic is its error report")]

use std::time::{Duration, Instant};

use chrono::Utc;
use store_consumer::dedup::{DedupSettings, Resends, Seen};
use store_event::EventId;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("a VmHWM and VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let max_ids: usize = value_of("--ids").map_or(1_000_000, |v| v.parse().expect("--ids N"));
    let batch: usize = value_of("--batch").map_or(10_000, |v| v.parse().expect("--batch N"));
    let settings = DedupSettings { window: Duration::from_secs(24 * 3600), max_ids };

    let (hwm, rss) = (status_kib("VmHWM:"), status_kib("VmRSS:"));
    let mut seen = Seen::new(settings);
    let started = Instant::now();
    let (mut events, mut resends, mut offset) = (0u64, 0u64, 0i64);
    for round in 0..(2 * max_ids).div_ceil(batch) {
        let first = offset;
        for n in 0..batch {
            // Every hundredth event is a resend of one ten events back.
            let number = (round * batch + n) as u64;
            let id = if n >= 10 && n % 100 == 0 { EventId::of(number - 10, "r") } else { EventId::of(number, "r") };
            if !seen.first_copy(id) {
                resends += 1;
            }
            events += 1;
            offset += 1;
        }
        seen.remember(first, Utc::now());
    }
    let took = started.elapsed();
    let (peak, now) = (status_kib("VmHWM:") - hwm, status_kib("VmRSS:") - rss);
    let remembered = seen.len();
    println!("{events} events in batches of {batch}, {resends} resends removed, {remembered} identities remembered");
    println!(
        "peak RSS +{:.1} MiB ({:.1} B per identity), now +{:.1} MiB ({:.1} B per identity); {:.0} ns per event",
        peak / 1024.0,
        peak * 1024.0 / remembered as f64,
        now / 1024.0,
        now * 1024.0 / remembered as f64,
        took.as_nanos() as f64 / events as f64
    );
}

//! The producer's CPU under an HTTP load, sampled in process (pprof at 999 Hz: perf events
//! do not work in these VMs). Runs the service as `producer` does, from the same
//! environment, for `--seconds N` (default 20) or until SIGINT/SIGTERM, then writes a
//! flamegraph and prints the functions most samples were in (self) and under (inclusive),
//! and the process's CPU-seconds. Drive it with wrk from `make bench`'s Lua script:
//!
//! ```sh
//! set -a; . scripts/local.env; set +a
//! STORE_EVENTS_TOPIC=profile-$$ HTTP_ADDR=127.0.0.1:18090 RUST_LOG=warn \
//!   cargo run --release -p producer --example profile_http -- --seconds 25 --flamegraph /tmp/producer.svg &
//! wrk -t2 -c32 -d15s -s post.lua http://127.0.0.1:18090/v1/events
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measuring tool: a panic is its error report")]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use producer::ProducerConfig;
use service_runtime::config::{Env, exit_on_error};
use service_runtime::{shutdown, telemetry};

/// As the producer's binary (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU-seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn print_top(title: &str, counts: HashMap<String, isize>, total: isize, lines: usize) {
    let mut top: Vec<_> = counts.into_iter().collect();
    top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    println!("{title}:");
    for (name, count) in top.into_iter().take(lines) {
        println!("{:6.1} %  {name}", 100.0 * count as f64 / total as f64);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: u64 = value_of("--seconds").map_or(20, |v| v.parse().expect("--seconds N"));
    // `--callers NAME`: also the stacks (innermost frames) that lead to NAME, by samples.
    let callers = value_of("--callers");
    let path = value_of("--flamegraph").unwrap_or_else(|| "producer-flamegraph.svg".to_owned());

    let config = exit_on_error(ProducerConfig::from_env(&Env::from_process()));
    telemetry::init(config.common.log_format, &config.common.log_filter);
    let listener = service_runtime::http::listen(config.common.http_addr).await.unwrap();
    let stop = shutdown::on_signal();
    let timer = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        timer.cancel();
    });
    let guard = pprof::ProfilerGuardBuilder::default().frequency(999).build().unwrap();
    let cpu = cpu_seconds();
    producer::run(config, listener, stop).await.unwrap();
    let cpu = cpu_seconds() - cpu;

    let report = guard.report().build().unwrap();
    report.flamegraph(std::fs::File::create(&path).expect("the flamegraph file")).unwrap();
    let (mut leaf, mut under, mut paths, mut total) = (HashMap::new(), HashMap::new(), HashMap::new(), 0);
    for (frames, count) in &report.data {
        total += count;
        let names: Vec<String> = frames.frames.iter().flatten().map(|symbol| symbol.name()).collect();
        if let Some(wanted) = &callers
            && let Some(at) = names.iter().position(|name| name.contains(wanted.as_str()))
        {
            let path: Vec<&str> = names[at..].iter().take(8).map(String::as_str).collect();
            *paths.entry(path.join("  <-  ")).or_default() += count;
        }
        *leaf.entry(names.first().cloned().unwrap_or_else(|| "?".to_owned())).or_default() += count;
        for name in names.into_iter().collect::<HashSet<_>>() {
            *under.entry(name).or_default() += count;
        }
    }
    println!("CPU {cpu:.2} s; flamegraph: {path} ({total} samples)");
    print_top("self time", leaf, total, 25);
    print_top("inclusive time", under, total, 60);
    if callers.is_some() {
        print_top("stacks to --callers", paths, total, 15);
    }
}

//! The CPU a consumer spends on its own work, without Kafka or S3: generated records (10 %
//! bad) judged into batches of 10,000 and sealed (gzip), as the sales-consumer does with
//! what it fetches. Bare JSON by default, as the original Lambda and `make bench`'s backlog
//! write it; `--headers` gives the records our producer's `event_type` header. Resends are
//! removed as a deployment does (`DEDUP_WINDOW`'s default: identities remembered, listed
//! in base64 in each entry); `--no-dedup` turns that off, to measure its cost. Prints
//! events/s and CPU-seconds per million events; `--flamegraph FILE` also samples the
//! stacks in process (pprof at 999 Hz: perf events do not work in these VMs), writes a
//! flamegraph and prints the functions most samples were in. `--formats json,parquet`
//! (`OUTPUT_FORMATS`, `json` by default) chooses the files stored events are written as;
//! the bytes of each format are printed; `--keep-parquet FILE` keeps the last Parquet file
//! (to look into with DuckDB's `parquet_metadata`).
//!
//! ```sh
//! cargo run --release -p store-consumer --example profile_batches -- --events 500000 --flamegraph /tmp/consumer.svg
//! cargo run --release -p store-consumer --example profile_batches -- --events 500000 --formats parquet
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measuring tool: a panic is its error report")]

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use rskafka::record::{Record, RecordAndOffset};
use store_consumer::batch::Batch;
use store_consumer::batch::Sealed;
use store_consumer::config::{BatchLimits, Formats};
use store_consumer::dedup::{DedupSettings, Seen};
use store_event::{EventType, Generator};

/// CPU-seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces): utime is the 14th field.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn records(count: usize, headers: bool) -> Vec<RecordAndOffset> {
    let mut generator = Generator::new(Some(7), 0.1);
    let now = Utc::now();
    (0..count)
        .map(|offset| {
            let generated = generator.next_event(now);
            let record = match (&generated.event, headers) {
                (Some(event), true) => event.to_record(),
                _ => Record {
                    key: None,
                    value: Some(generated.value.to_string().into_bytes()),
                    headers: Default::default(),
                    timestamp: now,
                },
            };
            RecordAndOffset { record, offset: offset as i64 }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let events: usize = value_of("--events").map_or(500_000, |v| v.parse().expect("--events N"));
    let headers = args.iter().any(|a| a == "--headers");
    let flamegraph = value_of("--flamegraph");
    let dedup = !args.iter().any(|a| a == "--no-dedup");
    let formats = Formats::parse(&value_of("--formats").unwrap_or_else(|| "json".to_owned())).expect("--formats");
    let settings =
        if dedup { DedupSettings::default() } else { DedupSettings { window: Default::default(), max_ids: 0 } };
    let mut seen = Seen::new(settings);
    let mut entry_bytes = 0usize;
    let limits = BatchLimits { max_events: 10_000, max_bytes: 4 * 1024 * 1024, max_age: std::time::Duration::MAX };

    let input = records(events, headers);
    let raw: usize = input.iter().map(|r| r.record.value.as_ref().map_or(0, Vec::len)).sum();
    let profiler = flamegraph.as_ref().map(|_| pprof::ProfilerGuardBuilder::default().frequency(999).build().unwrap());
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let (mut batch, mut stored) = (Batch::new(0, formats), 0u64);
    // Bytes of the gzip JSON data objects, of the Parquet files, of the dead letters, of the
    // Iceberg table's files (one per day of ts).
    let mut bytes = [0usize; 4];
    let mut count = |sealed: &Sealed| {
        let len = |body: &Option<Vec<u8>>| body.as_ref().map_or(0, Vec::len);
        for (total, body) in bytes.iter_mut().zip([&sealed.data, &sealed.parquet, &sealed.dead_letters]) {
            *total += len(body);
        }
        bytes[3] += sealed.lake.iter().flatten().map(|file| file.body.len()).sum::<usize>();
        stored += sealed.stored;
    };
    for record in &input {
        if !batch.fits(record) || batch.is_full(&limits) {
            let sealed = std::mem::replace(&mut batch, Batch::new(record.offset, formats)).seal(dedup, "profile", 0);
            if let Some(ids) = &sealed.event_ids {
                entry_bytes += serde_json::to_vec(ids).unwrap().len();
                seen.remember(sealed.first_offset, Utc::now());
            }
            count(&sealed);
        }
        batch.push(EventType::Sale, "profile", 0, record, &mut seen);
    }
    let last = batch.seal(dedup, "profile", 0);
    if let (Some(path), Some(file)) = (value_of("--keep-parquet"), &last.parquet) {
        std::fs::write(path, file).expect("--keep-parquet FILE");
    }
    count(&last);
    let (cpu, elapsed) = (cpu_seconds() - cpu, started.elapsed().as_secs_f64());

    let per_event = |total: usize| total as f64 / stored.max(1) as f64;
    println!(
        "{events} records ({}, {:.0} bytes each), {stored} stored ({formats}); {:.0} events/s; \
         {:.2} CPU-s per million events; {:.1} MB raw -> data {:.1} MB gzip JSON ({:.1} B/event), \
         {:.1} MB Parquet ({:.1} B/event), {:.1} MB Iceberg files ({:.1} B/event), dead letters {:.1} MB; \
         resends removed: {}, identities in entries {:.1} MB",
        if headers { "with headers" } else { "bare JSON" },
        raw as f64 / events as f64,
        events as f64 / elapsed,
        cpu * 1e6 / events as f64,
        raw as f64 / 1e6,
        bytes[0] as f64 / 1e6,
        per_event(bytes[0]),
        bytes[1] as f64 / 1e6,
        per_event(bytes[1]),
        bytes[3] as f64 / 1e6,
        per_event(bytes[3]),
        bytes[2] as f64 / 1e6,
        if dedup { "yes" } else { "no" },
        entry_bytes as f64 / 1e6,
    );
    if dedup {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?");
        println!("identities remembered: {}; {rss} (compare with --no-dedup for their memory)", seen.len());
    } else {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        println!("{}", status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?"));
    }
    if let (Some(guard), Some(path)) = (profiler, flamegraph) {
        let report = guard.report().build().unwrap();
        let file = std::fs::File::create(&path).expect("the flamegraph file");
        report.flamegraph(file).unwrap();
        // Self time: the innermost frame of each sample, by function name.
        let mut by_function: HashMap<String, isize> = HashMap::new();
        let mut total = 0;
        for (frames, count) in &report.data {
            total += count;
            let leaf = frames.frames.first().and_then(|f| f.first()).map_or("?".to_owned(), |s| s.name());
            *by_function.entry(leaf).or_default() += count;
        }
        let mut top: Vec<_> = by_function.into_iter().collect();
        top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        println!("flamegraph: {path} ({total} samples); self time:");
        for (name, count) in top.into_iter().take(15) {
            println!("{:6.1} %  {name}", 100.0 * count as f64 / total as f64);
        }
    }
}

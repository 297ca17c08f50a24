//! The producer's HTTP API.
//!
//! `POST /v1/events` takes one event object, a JSON array of events, or NDJSON
//! (`Content-Type: application/x-ndjson`). A batch is all or nothing at validation: one
//! invalid event rejects the request with 422 and nothing is written. The answer comes
//! only after Kafka acknowledged every event (acks=all) and gives each one's partition and
//! offset; an event Kafka did not acknowledge is never reported as written.
//!
//! `POST /v1/simulate` produces generated events like the original Lambda and answers its
//! summary, counting only what Kafka acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store_event::{BodyFormat, Document, EventType, FieldError, Generator, StoreEvent, parse_body};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, KeyStore, Principal, Stores};
use crate::generator::to_record;
use crate::limit::Limiter;
use crate::metrics::Metrics;
use crate::resend::Acknowledged;
use crate::sink::{Ack, SendError, Sink};

/// What the handlers share.
pub struct Api {
    /// The way into Kafka.
    pub sink: Arc<Sink>,
    /// Metrics.
    pub metrics: Metrics,
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `EVENT_TS_MAX_AHEAD`.
    pub ts_max_ahead: Duration,
    /// Who may write (`PRODUCER_AUTH`).
    pub gate: Gate,
    /// `PRODUCER_SIMULATE`.
    pub simulate: bool,
    /// The rate limits' buckets.
    pub limiter: Limiter,
    /// `PRODUCER_RATE_LIMIT`.
    pub rate_limit: f64,
    /// `PRODUCER_BODY_TIMEOUT`.
    pub body_timeout: Duration,
    /// The events acknowledged lately, to answer their resends (`PRODUCER_RESEND_WINDOW`).
    pub acknowledged: Acknowledged,
    /// `GENERATOR_BAD_SHARE`, the default of `/v1/simulate`.
    pub bad_share: f64,
    /// Cancelled at shutdown: a simulation stops making events and answers what it sent.
    pub shutdown: CancellationToken,
}

/// Who may use the API.
pub enum Gate {
    /// `PRODUCER_AUTH=none`: everyone, as the principal `anonymous`.
    Open,
    /// `PRODUCER_AUTH=api-keys`.
    Keys(Arc<KeyStore>),
}

/// The principal of open access.
const ANONYMOUS: &str = "anonymous";

/// The Kafka header that names who wrote an event.
pub const PRINCIPAL_HEADER: &str = "principal";

/// The principal behind a request, if any: `None` is answered with [`unauthorized`].
fn authenticate(api: &Api, headers: &HeaderMap) -> Option<Arc<Principal>> {
    let keys = match &api.gate {
        Gate::Open => {
            let anonymous =
                Principal { name: ANONYMOUS.to_owned(), stores: Stores::All, simulate: true, rate: Some(0.0) };
            return Some(Arc::new(anonymous));
        }
        Gate::Keys(store) => store.keys(),
    };
    let token = auth::bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()));
    token.and_then(|t| keys.principal(t))
}

/// The 401: the same few words whatever was wrong (no header, another scheme, an unknown
/// or revoked key), so that a prober learns nothing.
fn unauthorized(api: &Api) -> Response {
    api.metrics.rejected.with_label_values(&["unauthenticated"]).inc();
    let mut response = error(StatusCode::UNAUTHORIZED, "missing or invalid credentials", json!({}));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"store-events\""));
    response
}

/// The API routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new().route("/v1/events", post(post_events)).route("/v1/simulate", post(simulate)).with_state(api)
}

/// The header of an answer given from memory: every event of the request was acknowledged
/// before, and nothing was written again (the name Stripe's and others' idempotent APIs use).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "5";

fn error(status: StatusCode, message: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({ "error": message.into() });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    response
}

/// One invalid event in a 422 answer.
#[derive(Debug, Serialize)]
struct InvalidEvent {
    index: usize,
    errors: Vec<FieldError>,
}

/// One written event in a 200 answer.
#[derive(Debug, Serialize)]
struct Written {
    request_id: String,
    partition: i32,
    offset: i64,
}

struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> InFlight<'a> {
        metrics.in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn post_events(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Response {
    let _in_flight = InFlight::new(&api.metrics);
    // Before the body is read: an unknown client costs a header lookup and a hash.
    let Some(principal) = authenticate(&api, &headers) else { return unauthorized(&api) };
    // A principal already over its rate is refused before its body is read: a flood costs
    // a header lookup, a hash and this check, not the parsing of what it sends.
    let rate = principal.rate.unwrap_or(api.rate_limit);
    if rate > 0.0
        && let Err(wait) = api.limiter.take(&principal.name, rate, 0, Instant::now())
    {
        return rate_limited(&api, &principal.name, rate, wait);
    }
    let rejected = |reason: &str| api.metrics.rejected.with_label_values(&[reason]).inc();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match media.as_str() {
        "application/json" => BodyFormat::Json,
        "application/x-ndjson" | "application/ndjson" => BodyFormat::Ndjson,
        _ => {
            rejected("unsupported_media_type");
            let shown = if content_type.is_empty() { "none".to_owned() } else { format!("{content_type:?}") };
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {shown} is not supported: use application/json or application/x-ndjson"),
                json!({}),
            );
        }
    };
    let read = tokio::time::timeout(api.body_timeout, axum::body::to_bytes(body, api.max_body_bytes)).await;
    let Ok(read) = read else {
        rejected("slow_body");
        return error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {}s (PRODUCER_BODY_TIMEOUT)", api.body_timeout.as_secs_f64()),
            json!({}),
        );
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit")) => {
            rejected("too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes (MAX_BODY_BYTES)", api.max_body_bytes),
                json!({}),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body could not be read: {e}"), json!({})),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        rejected("empty");
        return error(
            StatusCode::BAD_REQUEST,
            "the body is empty: send an event, an array of events or NDJSON",
            json!({}),
        );
    }
    let values = match parse_body(&bytes, format) {
        Ok(values) => values,
        Err(message) => {
            rejected("not_json");
            return error(StatusCode::BAD_REQUEST, message, json!({}));
        }
    };
    if values.is_empty() {
        rejected("empty");
        return error(StatusCode::BAD_REQUEST, "no events: the array is empty", json!({}));
    }
    api.metrics.request_events.observe(values.len() as f64);

    let mut events = Vec::with_capacity(values.len());
    let mut invalid = Vec::new();
    for (index, mut value) in values.into_iter().enumerate() {
        value.insert_if_absent("request_id", || Document::String(uuid::Uuid::new_v4().to_string().into()));
        match StoreEvent::from_document(&value) {
            Ok(event) => match ts_too_far_ahead(&event, Utc::now(), api.ts_max_ahead) {
                None => events.push(event),
                Some(error) => {
                    rejected("ts_in_future");
                    invalid.push(InvalidEvent { index, errors: vec![error] });
                }
            },
            Err(e) => {
                rejected(e.kind());
                invalid.push(InvalidEvent { index, errors: e.field_errors() });
            }
        }
    }
    if !invalid.is_empty() {
        let count = invalid.len();
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{count} of {} events are invalid; nothing was written", count + events.len()),
            json!({ "invalid": invalid }),
        );
    }

    let forbidden: Vec<Value> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| !principal.stores.allows(event.store_id))
        .map(|(index, event)| json!({ "index": index, "field": "store_id", "store_id": event.store_id }))
        .collect();
    if !forbidden.is_empty() {
        rejected("forbidden_store");
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} of {} events are for stores {:?} may not write for; nothing was written",
                forbidden.len(),
                events.len(),
                principal.name
            ),
            json!({ "forbidden": forbidden }),
        );
    }

    // Resends: events acknowledged before are answered as then; a copy later in the same
    // request is answered with its first copy's result. Only first copies are written.
    let ids: Vec<_> = events.iter().map(StoreEvent::id).collect();
    let mut answers = api.acknowledged.lookup(&ids, Instant::now());
    let mut first_index: std::collections::HashMap<_, usize, foldhash::fast::RandomState> = Default::default();
    let mut copy_of: Vec<Option<usize>> = vec![None; events.len()];
    let mut to_send = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        if answers[index].is_some() {
            continue;
        }
        match first_index.get(id) {
            Some(first) => copy_of[index] = Some(*first),
            None => {
                first_index.insert(*id, index);
                to_send.push(index);
            }
        }
    }
    let resent = events.len() - to_send.len();
    if resent > 0 {
        api.metrics.resends.inc_by(resent as u64);
    }

    if rate > 0.0
        && !to_send.is_empty()
        && let Err(wait) = api.limiter.take(&principal.name, rate, to_send.len(), Instant::now())
    {
        return rate_limited(&api, &principal.name, rate, wait);
    }

    let mut failures: Vec<Option<String>> = vec![None; events.len()];
    if !to_send.is_empty() {
        let records = to_send
            .iter()
            .map(|&index| {
                let mut record = events[index].to_record();
                record.headers.insert(PRINCIPAL_HEADER.to_owned(), principal.name.clone().into_bytes());
                record
            })
            .collect();
        let results = match api.sink.send(records, false).await {
            Ok(results) => results,
            Err(e @ SendError::TooLarge { .. }) => {
                rejected("too_many_events");
                return error(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}; nothing was written"), json!({}));
            }
            Err(e) => {
                rejected(if matches!(e, SendError::Overloaded(_)) { "overloaded" } else { "kafka_unavailable" });
                return error(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; nothing was written"), json!({}));
            }
        };
        let mut acked = Vec::new();
        for (&index, result) in to_send.iter().zip(results) {
            match result {
                Ok(ack) => {
                    api.metrics.produced.with_label_values(&[events[index].event_type.as_str(), "http"]).inc();
                    acked.push((ids[index], ack));
                    answers[index] = Some(ack);
                }
                Err(reason) => failures[index] = Some(reason.to_string()),
            }
        }
        api.acknowledged.insert(acked, Instant::now());
    }
    for (index, first) in copy_of.iter().enumerate() {
        if let Some(first) = *first {
            answers[index] = answers[first];
            failures[index] = failures[first].clone();
        }
    }

    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match (answers[index], &failures[index]) {
            (Some(Ack { partition, offset }), _) => {
                written.push(Written { request_id: event.request_id.clone(), partition, offset })
            }
            (None, reason) => failed.push(json!({
                "index": index,
                "request_id": event.request_id,
                "reason": reason.as_deref().unwrap_or("not acknowledged"),
            })),
        }
    }
    api.metrics.accepted.inc_by(written.len() as u64);
    if !failed.is_empty() {
        rejected("kafka_unavailable");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} of {} events were not acknowledged by Kafka; retry those", failed.len(), events.len()),
            json!({ "written": written, "failed": failed }),
        );
    }
    let mut response =
        (StatusCode::OK, axum::Json(json!({ "accepted": written.len(), "events": written }))).into_response();
    if to_send.is_empty() {
        response.headers_mut().insert(REPLAYED_HEADER, header::HeaderValue::from_static("true"));
    }
    response
}

/// The 429 of a principal over its rate, with the whole seconds to wait in `Retry-After`.
fn rate_limited(api: &Api, principal: &str, rate: f64, wait: Duration) -> Response {
    api.metrics.rejected.with_label_values(&["rate_limited"]).inc();
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{principal:?} is over its rate limit of {rate} events/s; retry in {seconds}s"),
        json!({}),
    );
    if let Ok(value) = header::HeaderValue::from_str(&format!("{seconds}")) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The error for an event whose `ts` is more than `max_ahead` after `now` (Kafka would
/// refuse its record, whose timestamp is the `ts`), else `None`.
fn ts_too_far_ahead(event: &StoreEvent, now: chrono::DateTime<Utc>, max_ahead: Duration) -> Option<FieldError> {
    let ahead = (event.ts.with_timezone(&Utc) - now).to_std().ok()?;
    (ahead > max_ahead).then(|| FieldError {
        field: "ts".to_owned(),
        reason: format!(
            "is {}s ahead of this server's clock ({now}); at most {}s is taken (EVENT_TS_MAX_AHEAD; Kafka refuses \
             records stamped further ahead): check the sender's clock and time zone",
            ahead.as_secs(),
            max_ahead.as_secs()
        ),
    })
}

/// Parses a JSON document (an object or an array of objects) or NDJSON into values;
/// the error names the line and column.
/// The body of `POST /v1/simulate`: a count or a duration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateRequest {
    count: Option<u64>,
    duration_seconds: Option<f64>,
    bad_share: Option<f64>,
    seed: Option<u64>,
}

/// The original Lambda's summary, field for field. `tot_sales` is the revenue of the
/// acknowledged valid sale events, Σ price × qty × (1 − discount/100), rounded to cents
/// (the original summed the price of every event, inventory included).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    /// True when Kafka acknowledged every generated event.
    pub status: bool,
    /// Events acknowledged.
    pub tot_msgs: u64,
    /// Bad events acknowledged.
    pub bad_msgs: u64,
    /// Sale events acknowledged (bad ones included).
    pub sale_evnts: u64,
    /// Inventory events acknowledged (bad ones included).
    pub inventory_evnts: u64,
    /// Revenue of the acknowledged valid sale events.
    pub tot_sales: f64,
}

const MAX_SIMULATE_COUNT: u64 = 1_000_000;
const MAX_SIMULATE_SECONDS: f64 = 300.0;

async fn simulate(State(api): State<Arc<Api>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let _in_flight = InFlight::new(&api.metrics);
    if !api.simulate {
        return error(
            StatusCode::NOT_FOUND,
            "POST /v1/simulate is off: it writes generated events to the topic; set PRODUCER_SIMULATE=true to serve it",
            json!({}),
        );
    }
    let Some(principal) = authenticate(&api, &headers) else { return unauthorized(&api) };
    if !principal.simulate {
        api.metrics.rejected.with_label_values(&["forbidden_simulate"]).inc();
        return error(
            StatusCode::FORBIDDEN,
            format!("{:?} may not simulate: its key needs \"simulate\": true in the keys file", principal.name),
            json!({}),
        );
    }
    let request: SimulateRequest = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a simulate request: {e}"), json!({})),
    };
    let mut problems = Vec::new();
    match (request.count, request.duration_seconds) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push(json!({"field": "count", "reason": "give either count or duration_seconds"}))
        }
        (Some(count), None) if count == 0 || count > MAX_SIMULATE_COUNT => {
            problems.push(json!({"field": "count", "reason": format!("must be between 1 and {MAX_SIMULATE_COUNT}")}))
        }
        (None, Some(s)) if !(s > 0.0 && s <= MAX_SIMULATE_SECONDS) => problems.push(
            json!({"field": "duration_seconds", "reason": format!("must be above 0 and at most {MAX_SIMULATE_SECONDS}")}),
        ),
        _ => {}
    }
    let bad_share = request.bad_share.unwrap_or(api.bad_share);
    if !(0.0..=1.0).contains(&bad_share) {
        problems.push(json!({"field": "bad_share", "reason": "must be between 0 and 1"}));
    }
    if !problems.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid simulate request", json!({ "invalid": problems }));
    }
    let summary = run_simulation(&api, request.count, request.duration_seconds, bad_share, request.seed).await;
    (StatusCode::OK, axum::Json(summary)).into_response()
}

/// What the simulate summary needs of one generated event.
struct Tally {
    event_type: EventType,
    bad: bool,
    /// price × qty × (1 − discount/100) for a valid sale event, else 0.
    revenue: f64,
}

impl Tally {
    fn of(generated: &store_event::GeneratedEvent) -> Tally {
        let revenue = generated
            .event
            .as_ref()
            .filter(|e| e.event_type == EventType::Sale)
            .map_or(0.0, |e| e.price * e.qty as f64 * (1.0 - e.discount / 100.0));
        Tally { event_type: generated.event_type, bad: generated.is_bad(), revenue }
    }
}

/// Chunks of generated events sent at once: Kafka requests are latency-bound (one
/// acknowledgement per request), so keeping several in flight is what makes throughput.
const CHUNKS_IN_FLIGHT: usize = 16;
const CHUNK: u64 = 1000;

/// Generates one chunk's records and tallies. Each chunk has its own generator, seeded
/// from the request's seed and the chunk's number (same seed, same events), so that
/// chunks are made on the blocking pool, in parallel with each other and with the
/// runtime's threads sending earlier chunks: making events is the CPU-heavy part.
fn generate_chunk(
    seed: Option<u64>,
    chunk: u64,
    size: u64,
    bad_share: f64,
) -> (Vec<rskafka::record::Record>, Vec<Tally>) {
    let seed = seed.map(|s| s ^ chunk.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut generator = Generator::new(seed, bad_share);
    (0..size)
        .map(|_| {
            let generated = generator.next_event(Utc::now());
            (to_record(&generated), Tally::of(&generated))
        })
        .unzip()
}

/// Produces generated events in chunks until the count or the duration is reached, or
/// shutdown (then `status` is false and the summary counts what was acknowledged),
/// keeping [`CHUNKS_IN_FLIGHT`] chunks being made or waiting for Kafka at once. A chunk
/// holds at most [`CHUNK`] events and never more than the sink's capacity.
pub async fn run_simulation(
    api: &Api,
    count: Option<u64>,
    duration_seconds: Option<f64>,
    bad_share: f64,
    seed: Option<u64>,
) -> Summary {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;

    let deadline = duration_seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut summary = Summary { status: true, ..Summary::default() };
    let mut revenue = 0.0;
    let mut made = 0;
    let mut chunks = 0;
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let makers = Arc::new(tokio::sync::Semaphore::new(cores));
    let chunk = CHUNK.min(api.sink.capacity() as u64);
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < CHUNKS_IN_FLIGHT {
            let size = match (count, deadline) {
                (Some(count), _) if made >= count => break,
                (Some(count), _) => chunk.min(count - made),
                (None, Some(deadline)) if Instant::now() >= deadline => break,
                _ => chunk,
            };
            if api.shutdown.is_cancelled() {
                summary.status = false;
                break;
            }
            made += size;
            chunks += 1;
            // Only what the summary needs is kept while a chunk waits for Kafka; the
            // generated JSON is dropped as soon as its record is built.
            let (sink, makers) = (Arc::clone(&api.sink), Arc::clone(&makers));
            in_flight.push(async move {
                // As many chunks are made at once as there are cores: more threads would
                // only add memory (each has its own allocator arena), not speed.
                let made = {
                    let _maker = makers.acquire().await.ok()?;
                    tokio::task::spawn_blocking(move || generate_chunk(seed, chunks, size, bad_share)).await
                };
                // A chunk whose making failed (a panic in the generator) is reported as not sent.
                let (records, tallies) = made.ok()?;
                let sent = sink.send(records, true).await;
                Some((tallies, sent))
            });
        }
        let Some(done) = in_flight.next().await else { break };
        let Some((tallies, Ok(results))) = done else {
            summary.status = false;
            continue;
        };
        let before = (summary.sale_evnts, summary.inventory_evnts);
        for (tally, result) in tallies.iter().zip(results) {
            if result.is_err() {
                summary.status = false;
                continue;
            }
            summary.tot_msgs += 1;
            summary.bad_msgs += u64::from(tally.bad);
            match tally.event_type {
                EventType::Sale => summary.sale_evnts += 1,
                EventType::Inventory => summary.inventory_evnts += 1,
            }
            revenue += tally.revenue;
        }
        let produced = &api.metrics.produced;
        produced.with_label_values(&[EventType::Sale.as_str(), "simulate"]).inc_by(summary.sale_evnts - before.0);
        produced
            .with_label_values(&[EventType::Inventory.as_str(), "simulate"])
            .inc_by(summary.inventory_evnts - before.1);
    }
    summary.tot_sales = (revenue * 100.0).round() / 100.0;
    summary
}

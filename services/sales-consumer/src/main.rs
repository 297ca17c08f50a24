//! sales-consumer: Keeps sale_event records and writes them to S3 for marketing's revenue reports.
//! All logic lives in the `store-consumer` library; this binary only picks the type.

fn main() -> std::process::ExitCode {
    store_consumer::main(store_event::EventType::Sale)
}

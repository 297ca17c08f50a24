//! inventory-consumer: Keeps inventory_event records and writes them to S3 for the warehouse.
//! All logic lives in the `store-consumer` library; this binary only picks the type.

fn main() -> std::process::ExitCode {
    store_consumer::main(store_event::EventType::Inventory)
}

//! Store at scale: loads N leads with ten attributes and twenty events each, reports resident
//! memory per lead, then measures start-up from the log alone (replay) and from a snapshot.
//!
//! `cargo run --release -p leadscore-bench --bin store-scale -- [LEADS] [DIR]`

#![forbid(unsafe_code)]

use std::time::Instant;

use leadscore_bench::{fill, open_store, resident_bytes};

fn main() {
    let mut args = std::env::args().skip(1);
    let leads: u64 = args.next().map_or(1_000_000, |n| n.parse().expect("LEADS is a number"));
    let tmp;
    let dir = match args.next() {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_owned()
        }
    };

    let baseline = resident_bytes();
    let store = open_store(&dir);
    let (upserted, recorded) = fill(&store, leads);
    let stats = store.stats();
    let resident = resident_bytes() - baseline;
    println!("loaded {} leads, {} events, log {} MiB", stats.leads, stats.events, stats.log_bytes >> 20);
    println!(
        "upserts: {:.0} leads/s; events: {:.0} events/s",
        leads as f64 / upserted.as_secs_f64(),
        stats.events as f64 / recorded.as_secs_f64()
    );
    println!("resident memory: {} MiB, {:.0} bytes per lead", resident >> 20, resident as f64 / leads as f64);
    let records = stats.last_lsn;
    drop(store);

    let started = Instant::now();
    let store = open_store(&dir);
    let replay = started.elapsed();
    println!(
        "start-up from the log: {:.2} s, {} records, {:.0} records/s, {:.0} events/s",
        replay.as_secs_f64(),
        records,
        records as f64 / replay.as_secs_f64(),
        stats.events as f64 / replay.as_secs_f64()
    );

    let started = Instant::now();
    let snapshot = store.snapshot().unwrap();
    println!("snapshot: {:.2} s, {} MiB", started.elapsed().as_secs_f64(), snapshot.bytes >> 20);
    drop(store);
    let started = Instant::now();
    let store = open_store(&dir);
    println!("start-up from the snapshot: {:.2} s, {} leads", started.elapsed().as_secs_f64(), store.stats().leads);
}

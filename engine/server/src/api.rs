//! The gRPC services: decode, validate, call the services below, map errors. One `Context`
//! serves them all. Each service's handlers live in their own file and its messages beside
//! them in `<service>/convert.rs`, which holds every rule its requests must meet; the rules
//! all requests share (ids, names, values, time stamps) are in `fields`.

pub(crate) mod admin;
pub(crate) mod dialer;
pub(crate) mod fields;
#[cfg(test)]
mod fuzz;
pub(crate) mod lead;
pub(crate) mod pool;
pub(crate) mod routing;
pub(crate) mod scoring;
pub(crate) mod status;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{Notify, watch};

use leadscore_config::Config;
use leadscore_services::dialer::Dialer;
use leadscore_services::generation::Generations;
use leadscore_services::routing::Router;
use leadscore_services::scoring::{Scoring, Trigger};
use leadscore_store::Store;
use leadscore_store::clock::Clock;
use leadscore_store::lead::LeadId;

/// Below this, a unary answer goes plain even to a client that accepts compression: gzip's
/// framing and the CPU would cost more than the bytes saved.
const COMPRESS_FROM_BYTES: usize = 1024;

/// A unary answer, compressed (where the client and `server.compression` allow) only when it
/// is large enough to gain.
pub(crate) fn answer<T: leadscore_proto::prost::Message>(message: T) -> leadscore_proto::tonic::Response<T> {
    let small = message.encoded_len() < COMPRESS_FROM_BYTES;
    let mut response = leadscore_proto::tonic::Response::new(message);
    if small {
        response.disable_compression();
    }
    response
}

/// What every handler needs.
#[derive(Clone, Debug)]
pub struct Context {
    pub store: Arc<Store>,
    pub scoring: Arc<Scoring>,
    /// The current configuration generation, and the swap to the next.
    pub generations: Arc<Generations>,
    pub dialer: Arc<Dialer>,
    pub router: Arc<Router>,
    /// The configuration the server started with; the sections that may change at run time
    /// are read from the scoring pipeline instead.
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// Woken on every erasure, so a snapshot soon removes the erased lead from disk.
    pub erased: Arc<Notify>,
    pub started_at_ms: i64,
    /// Stalls the watchdog found, for `Stats`.
    pub watchdog_stalls: Arc<AtomicU64>,
    /// Turns true at shutdown, so that endless streams finish and the drain is quick.
    pub closing: watch::Receiver<bool>,
}

impl Context {
    /// After a change to these leads: rescores them, then requeues in the dialer those whose
    /// scores or lead changed. Each step runs with no lock of the other held.
    fn rescore(&self, ids: &[LeadId], trigger: Trigger) {
        self.dialer.requeue(&self.scoring.rescore(ids, trigger));
    }
}

#[cfg(test)]
mod tests {
    use leadscore_proto::tonic::codec::SingleMessageCompressionOverride;
    use leadscore_proto::v1 as pb;

    #[test]
    fn only_answers_of_a_kilobyte_or_more_may_be_compressed() {
        let lead = |bytes: usize| pb::GetLeadResponse {
            lead: Some(pb::Lead { id: "x".repeat(bytes), ..Default::default() }),
            ..Default::default()
        };
        let overridden =
            |bytes| super::answer(lead(bytes)).extensions().get::<SingleMessageCompressionOverride>().copied();
        assert_eq!(overridden(900), Some(SingleMessageCompressionOverride::Disable));
        assert_eq!(overridden(1100), None);
    }
}

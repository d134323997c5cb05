//! The one place domain errors become gRPC statuses.

use leadscore_proto::tonic::Status;

use super::convert::FieldError;
use crate::config::ConfigError;
use crate::dialer::DialError;
use crate::generation::ConfigChangeError;
use crate::plugin::CallError;
use crate::scoring::ScoreError;
use crate::store::StoreError;

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        Status::invalid_argument(format!("{}: {}", e.field, e.rule))
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::UnknownLead { .. } | StoreError::NotFound(_) => Status::not_found(message),
            StoreError::Suppressed { .. } | StoreError::LeaseEnded { .. } | StoreError::UnknownAgent { .. } => {
                Status::failed_precondition(message)
            }
            StoreError::UnknownLease { .. } => Status::not_found(message),
            StoreError::ObjectionLocked { .. } => Status::permission_denied(message),
            StoreError::Limit { .. } => Status::resource_exhausted(message),
            // Nothing was applied, so the client may retry.
            StoreError::Log(_) => {
                tracing::error!(cause = %message, "log write failed");
                Status::unavailable(message)
            }
            StoreError::Snapshot(_) => {
                tracing::error!(cause = %message, "snapshot failed");
                Status::internal(message)
            }
        }
    }
}

/// Runs work of a few microseconds (one lead's score, a claim) on the calling thread, where a
/// hop to the blocking pool would cost more than the work, and anything longer on the pool.
pub async fn run<T, E>(short: bool, work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: Send + 'static,
    Status: From<E>,
{
    if short { work().map_err(Status::from) } else { blocking(work).await }
}

/// Runs work that waits on the disk or scores whole batches off the async threads.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: Send + 'static,
    Status: From<E>,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("background task failed: {e}")))?
        .map_err(Status::from)
}

impl From<ScoreError> for Status {
    fn from(e: ScoreError) -> Self {
        let message = e.to_string();
        match e {
            ScoreError::UnknownCampaign { .. } => Status::invalid_argument(message),
            ScoreError::NotFound(_) => Status::not_found(message),
            ScoreError::NoScorer(_) => Status::failed_precondition(message),
            ScoreError::Plugin(CallError::Quarantined { .. }) => Status::unavailable(message),
            ScoreError::Plugin(_) => Status::internal(message),
        }
    }
}

impl From<DialError> for Status {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Store(e) => e.into(),
            DialError::Score(e) => e.into(),
            DialError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            DialError::AgentUnavailable(_) => Status::failed_precondition(e.to_string()),
        }
    }
}

/// A configuration document that does not load: every problem, each naming its key.
impl From<ConfigError> for Status {
    fn from(e: ConfigError) -> Self {
        Status::invalid_argument(e.problems.join("; "))
    }
}

impl From<ConfigChangeError> for Status {
    fn from(e: ConfigChangeError) -> Self {
        match e {
            ConfigChangeError::VersionMismatch { .. } => Status::aborted(e.to_string()),
            ConfigChangeError::Invalid(_) => Status::invalid_argument(e.to_string()),
            ConfigChangeError::Store(e) => e.into(),
        }
    }
}

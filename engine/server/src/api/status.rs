//! The one place domain errors become gRPC statuses.

use leadscore_proto::tonic::Status;

use super::fields::FieldError;
use leadscore_config::ConfigError;
use leadscore_plugin_loader::CallError;
use leadscore_services::dialer::DialError;
use leadscore_services::generation::ConfigChangeError;
use leadscore_services::scoring::ScoreError;
use leadscore_store::StoreError;

/// A domain error as the status its caller gets. (Domain errors live in the crates below, which
/// know nothing of gRPC; `status` is the `map_err` that turns one into the other.)
pub trait ToStatus {
    fn to_status(self) -> Status;
}

/// The status a domain error becomes.
pub fn status(error: impl ToStatus) -> Status {
    error.to_status()
}

impl ToStatus for Status {
    fn to_status(self) -> Status {
        self
    }
}

impl ToStatus for FieldError {
    fn to_status(self) -> Status {
        self.into()
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        Status::invalid_argument(format!("{}: {}", e.field, e.rule))
    }
}

impl ToStatus for StoreError {
    fn to_status(self) -> Status {
        let e = self;
        let message = e.to_string();
        match e {
            StoreError::UnknownLead { .. } | StoreError::NotFound(_) => Status::not_found(message),
            StoreError::Suppressed { .. }
            | StoreError::ConsentLoosened { .. }
            | StoreError::ErasedDuringLease { .. }
            | StoreError::LeaseEnded { .. }
            | StoreError::UnknownAgent { .. } => Status::failed_precondition(message),
            StoreError::UnknownLease { .. } => Status::not_found(message),
            StoreError::ObjectionLocked { .. } => Status::permission_denied(message),
            StoreError::Limit { .. } => Status::resource_exhausted(message),
            // Nothing was applied, so the client may retry.
            StoreError::Log(_) => {
                tracing::error!(cause = %message, "log write failed");
                Status::unavailable(message)
            }
            // The write may be kept or lost; the log's owner steps down, and a retry goes to
            // the next one.
            StoreError::Unconfirmed(_) => {
                tracing::error!(cause = %message, "log write unconfirmed");
                Status::unavailable(message)
            }
            StoreError::Snapshot(_) => {
                tracing::error!(cause = %message, "snapshot failed");
                Status::internal(message)
            }
        }
    }
}

impl ToStatus for ScoreError {
    fn to_status(self) -> Status {
        let e = self;
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

impl ToStatus for DialError {
    fn to_status(self) -> Status {
        let e = self;
        match e {
            DialError::Store(e) => e.to_status(),
            DialError::Score(e) => e.to_status(),
            DialError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            DialError::AgentUnavailable(_) | DialError::Revoked { .. } => Status::failed_precondition(e.to_string()),
        }
    }
}

/// A configuration document that does not load: every problem, each naming its key.
impl ToStatus for ConfigError {
    fn to_status(self) -> Status {
        let e = self;
        Status::invalid_argument(e.problems.join("; "))
    }
}

impl ToStatus for ConfigChangeError {
    fn to_status(self) -> Status {
        let e = self;
        match e {
            ConfigChangeError::VersionMismatch { .. } => Status::aborted(e.to_string()),
            ConfigChangeError::Invalid(_) => Status::invalid_argument(e.to_string()),
            ConfigChangeError::ReloadRefused(_) => Status::failed_precondition(e.to_string()),
            ConfigChangeError::Store(e) => e.to_status(),
        }
    }
}

//! The one place domain errors become gRPC statuses. Each carries, beside its text, the
//! standard details in `grpc-status-details-bin` that gRPC client libraries decode: a
//! `google.rpc.ErrorInfo` whose reason (`LEAD_ERASED`, `WINDOW_CLOSED`, …) is stable for clients
//! to switch on, a `google.rpc.BadRequest` naming the field and its rule for
//! `INVALID_ARGUMENT`, a `google.rpc.ResourceInfo` for `NOT_FOUND`.

use std::collections::HashMap;

use leadscore_proto::tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::fields::FieldError;
use leadscore_config::ConfigError;
use leadscore_plugin_loader::CallError;
use leadscore_services::dialer::DialError;
use leadscore_services::dialer::revocations::Why;
use leadscore_services::generation::ConfigChangeError;
use leadscore_services::scoring::ScoreError;
use leadscore_store::StoreError;

/// The `domain` of every `ErrorInfo` Leadscore sends.
pub const DOMAIN: &str = "leadscore.v1";

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

/// A status with an `ErrorInfo` of `reason` and `metadata`, and whatever else `details` has.
pub fn detailed(
    code: Code,
    message: String,
    reason: &str,
    metadata: &[(&str, String)],
    mut details: ErrorDetails,
) -> Status {
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    details.set_error_info(reason, DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// `INVALID_ARGUMENT` for one broken rule: a `BadRequest` naming the field and the rule.
pub fn invalid(field: &str, rule: &str, reason: &str) -> Status {
    let details = ErrorDetails::with_bad_request_violation(field, rule);
    detailed(Code::InvalidArgument, format!("{field}: {rule}"), reason, &[("field", field.to_owned())], details)
}

/// `INVALID_ARGUMENT` for a configuration's problems, each "key: rule", one violation each.
fn invalid_config(message: String, problems: &[String]) -> Status {
    let mut details = ErrorDetails::new();
    for problem in problems {
        let (key, rule) = problem.split_once(": ").unwrap_or(("", problem));
        details.add_bad_request_violation(key, rule);
    }
    detailed(Code::InvalidArgument, message, "INVALID_CONFIG", &[], details)
}

/// `NOT_FOUND` with the resource that was not found.
fn not_found(message: String, kind: &str, name: String, reason: &str) -> Status {
    let details = ErrorDetails::with_resource_info(kind, name.clone(), "", message.clone());
    detailed(Code::NotFound, message, reason, &[(kind, name)], details)
}

impl ToStatus for FieldError {
    fn to_status(self) -> Status {
        self.into()
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        invalid(&e.field, &e.rule, "INVALID_FIELD")
    }
}

impl ToStatus for StoreError {
    fn to_status(self) -> Status {
        let message = self.to_string();
        let plain = |code, reason: &str, field: &str| {
            detailed(code, message.clone(), reason, &[("field", field.to_owned())], ErrorDetails::new())
        };
        match self {
            StoreError::UnknownLead { id, .. } | StoreError::NotFound(id) => {
                not_found(message, "lead", id.to_string(), "LEAD_NOT_FOUND")
            }
            StoreError::UnknownLease { lease, lead, .. } => {
                not_found(message, "lease", leadscore_services::dialer::lease_id(lease, &lead), "LEASE_NOT_OPEN")
            }
            StoreError::Suppressed { field } => plain(Code::FailedPrecondition, "LEAD_ERASED", &field),
            StoreError::ErasedDuringLease { field, .. } => plain(Code::FailedPrecondition, "LEAD_ERASED", &field),
            StoreError::ConsentLoosened { field, .. } => plain(Code::FailedPrecondition, "CONSENT_LOOSENED", &field),
            StoreError::LeaseEnded { field, .. } => plain(Code::FailedPrecondition, "LEASE_ENDED", &field),
            StoreError::UnknownAgent { field, .. } => plain(Code::FailedPrecondition, "AGENT_UNKNOWN", &field),
            StoreError::ObjectionLocked { field } => plain(Code::PermissionDenied, "OBJECTION_LOCKED", &field),
            // A bound of the data (events per lead): waiting does not help, so no RetryInfo.
            StoreError::Limit { field, .. } => plain(Code::ResourceExhausted, "LIMIT_REACHED", &field),
            // Nothing was applied, so the client may retry.
            StoreError::Log(_) => {
                tracing::error!(cause = %message, "log write failed");
                plain(Code::Unavailable, "LOG_UNAVAILABLE", "")
            }
            // The write may be kept or lost; the log's owner steps down, and a retry goes to
            // the next one.
            StoreError::Unconfirmed(_) => {
                tracing::error!(cause = %message, "log write unconfirmed");
                plain(Code::Unavailable, "WRITE_UNCONFIRMED", "")
            }
            StoreError::Snapshot(_) => {
                tracing::error!(cause = %message, "snapshot failed");
                plain(Code::Internal, "SNAPSHOT_FAILED", "")
            }
        }
    }
}

impl ToStatus for ScoreError {
    fn to_status(self) -> Status {
        let message = self.to_string();
        let plain = |code, reason: &str| detailed(code, message.clone(), reason, &[], ErrorDetails::new());
        match self {
            ScoreError::UnknownCampaign { ref field, .. } => {
                let rule = message.strip_prefix(&format!("{field}: ")).unwrap_or(&message);
                invalid(field, rule, "UNKNOWN_CAMPAIGN")
            }
            ScoreError::NotFound(id) => not_found(message, "lead", id.to_string(), "LEAD_NOT_FOUND"),
            ScoreError::NoScorer(_) => plain(Code::FailedPrecondition, "NO_SCORER"),
            ScoreError::Unscored { .. } => plain(Code::FailedPrecondition, "LEAD_UNSCORED"),
            ScoreError::Plugin(CallError::Quarantined { .. }) => plain(Code::Unavailable, "SCORER_QUARANTINED"),
            ScoreError::Plugin(_) => plain(Code::Internal, "SCORER_FAILED"),
        }
    }
}

impl ToStatus for DialError {
    fn to_status(self) -> Status {
        match self {
            DialError::Store(e) => e.to_status(),
            DialError::Score(e) => e.to_status(),
            DialError::Invalid { field, rule } => invalid(field, &rule, "INVALID_FIELD"),
            DialError::AgentUnavailable(_) => {
                let message = self.to_string();
                detailed(Code::FailedPrecondition, message, "AGENT_UNAVAILABLE", &[], ErrorDetails::new())
            }
            // The reason is why the lead must not be called: DO_NOT_CALL, WINDOW_CLOSED, …
            DialError::Revoked { field, lease, why } => {
                let message = self.to_string();
                let metadata = [("field", field.to_owned()), ("lease", lease.to_string())];
                let reason = match why {
                    Why::DoNotCall => "DO_NOT_CALL",
                    Why::ConsentWithdrawn => "CONSENT_WITHDRAWN",
                    Why::Objected => "OBJECTED",
                    Why::Erased => "LEAD_ERASED",
                    Why::WindowClosed => "WINDOW_CLOSED",
                };
                detailed(Code::FailedPrecondition, message, reason, &metadata, ErrorDetails::new())
            }
        }
    }
}

/// A configuration document that does not load: every problem, each naming its key.
impl ToStatus for ConfigError {
    fn to_status(self) -> Status {
        invalid_config(self.problems.join("; "), &self.problems)
    }
}

impl ToStatus for ConfigChangeError {
    fn to_status(self) -> Status {
        let message = self.to_string();
        match self {
            ConfigChangeError::VersionMismatch { expected, current } => {
                let metadata = [("expected_version", expected.to_string()), ("current_version", current.to_string())];
                detailed(Code::Aborted, message, "CONFIG_VERSION_CHANGED", &metadata, ErrorDetails::new())
            }
            ConfigChangeError::Invalid(problems) => invalid_config(message, &problems),
            ConfigChangeError::ReloadRefused(_) => {
                detailed(Code::FailedPrecondition, message, "RELOAD_REFUSED", &[], ErrorDetails::new())
            }
            ConfigChangeError::Store(e) => e.to_status(),
        }
    }
}

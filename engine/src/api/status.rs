//! The one place domain errors become gRPC statuses.

use leadscore_proto::tonic::Status;

use super::convert::FieldError;
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
            StoreError::Suppressed { .. } => Status::failed_precondition(message),
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

/// Runs store work that may wait on the disk off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
        .map_err(Status::from)
}

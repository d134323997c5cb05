//! Every call's admission, before it is decoded: who calls (`auth`: a known token holding the
//! role the method needs) and whether now (`limits`: calls in flight, the caller's rate). A call
//! refused is answered here; an admitted one carries its `Caller` to the handler and holds its
//! in-flight permit until its response starts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::ready;

use leadscore_proto::tonic::Status;
use leadscore_proto::tonic::codegen::{Context, Poll, Service, http};

use tokio::sync::OwnedSemaphorePermit;

use crate::ops::auth::{Caller, Tokens};
use crate::ops::limits::Limits;

#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    /// `None` on a server without tokens: every caller is admitted as far as auth goes.
    pub tokens: Option<Arc<Tokens>>,
    pub limits: Arc<Limits>,
}

impl AdmissionLayer {
    /// Admits a call to the method at `path` with these headers: its caller, and the in-flight
    /// permit to hold while it is served; or the refusal. The console asks this too.
    pub fn admit(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<(Option<Caller>, Option<OwnedSemaphorePermit>), Status> {
        let caller = match &self.tokens {
            Some(tokens) => tokens.check(path, headers)?,
            None => None,
        };
        let permit = self.limits.admit(path, caller.as_ref())?;
        Ok((caller, permit))
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted { inner, layer: Arc::new(self.clone()) }
    }
}

/// Cloned for every call (tonic serves each call with its own copy): one shared count to raise
/// rather than one per part.
#[derive(Clone, Debug)]
pub struct Admitted<S> {
    inner: S,
    layer: Arc<AdmissionLayer>,
}

impl<S, Req, Res> Service<http::Request<Req>> for Admitted<S>
where
    S: Service<http::Request<Req>, Response = http::Response<Res>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    Res: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AdmittedCall<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Req>) -> Self::Future {
        let (caller, permit) = match self.layer.admit(request.uri().path(), request.headers()) {
            Ok(admitted) => admitted,
            Err(status) => return AdmittedCall::Refused { answer: Some(status.into_http()) },
        };
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        AdmittedCall::Served { call: self.inner.call(request), permit }
    }
}

pin_project_lite::pin_project! {
    /// A call served while holding its permit, or refused and answered at once.
    #[project = AdmittedCallProj]
    pub enum AdmittedCall<F, R> {
        Served { #[pin] call: F, permit: Option<OwnedSemaphorePermit> },
        Refused { answer: Option<R> },
    }
}

impl<F, R, E> Future for AdmittedCall<F, R>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedCallProj::Served { call, permit } => {
                let answer = ready!(call.poll(cx));
                // The permit goes back as the answer starts, not when this future is dropped.
                drop(permit.take());
                Poll::Ready(answer)
            }
            AdmittedCallProj::Refused { answer } => Poll::Ready(Ok(answer.take().expect("a call is answered once"))),
        }
    }
}

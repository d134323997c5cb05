//! Every call's admission, before it is decoded: who calls (`auth`: a known token holding the
//! role the method needs) and whether now (`limits`: calls in flight, the caller's rate). A call
//! refused is answered here; an admitted one carries its `Caller` to the handler and holds its
//! in-flight permit until its response starts.

use std::sync::Arc;

use leadscore_proto::tonic::Status;
use leadscore_proto::tonic::codegen::{BoxFuture, Context, Poll, Service, http};

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
        Admitted { inner, layer: self.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Admitted<S> {
    inner: S,
    layer: AdmissionLayer,
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
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Req>) -> Self::Future {
        let (caller, permit) = match self.layer.admit(request.uri().path(), request.headers()) {
            Ok(admitted) => admitted,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}

//! The web console: pages embedded in the binary, served beside gRPC on `[console] listen`.
//! Every figure it shows comes from the service implementations gRPC clients call, in process,
//! as their canonical JSON, so the console and a gRPC client read the same numbers; live panels
//! are server-sent events fed by the same watch streams. Calls carry the same bearer tokens
//! and need the same roles as the gRPC method each mirrors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use leadscore_proto::prost::Message;
use leadscore_proto::tonic::{Code, Request, Status};
use leadscore_proto::v1 as pb;
use pb::admin_service_server::AdminService;
use pb::dialer_service_server::DialerService;
use pb::lead_service_server::LeadService;
use pb::routing_service_server::RoutingService;
use pb::scoring_service_server::ScoringService;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt};

use crate::api::Context;
use crate::ops::admission::AdmissionLayer;
use crate::ops::auth::Caller;
use crate::ops::tls::{Speaks, Tls};

/// How often the wallboard's live panel is refreshed.
const WALLBOARD_EVERY: Duration = Duration::from_secs(2);

/// The pages' files, embedded.
const INDEX: &str = include_str!("../console/index.html");
const APP: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/style.css");
const CHART: &str = include_str!("../console/vendor/chart.umd.min.js");

/// What the console reads: the services a gRPC client calls, in process (a single node's engine,
/// or a cluster node's front, which gathers every shard's part).
pub trait Services:
    AdminService + DialerService + LeadService + RoutingService + ScoringService + Clone + Send + Sync + 'static
{
    /// The campaigns' names, for the pages' picker.
    fn campaign_names(&self) -> Result<Vec<String>, Status>;
}

impl Services for Context {
    fn campaign_names(&self) -> Result<Vec<String>, Status> {
        Ok(self.scoring.pipeline().campaign_names().iter().map(|n| n.to_string()).collect())
    }
}

struct Console<S> {
    services: S,
    /// Turns true when the server stops: live panels end then.
    closing: watch::Receiver<bool>,
    /// The gRPC port's tokens and limits, shared: a token's rate counts its calls on both.
    admission: AdmissionLayer,
    /// Our messages' descriptors, to write them as protobuf's canonical JSON.
    messages: DescriptorPool,
}

type Shared<S> = State<Arc<Console<S>>>;

/// What a page asks for; each handler reads the parameters it needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    campaign: String,
    limit: Option<u32>,
    bins: u32,
    minutes: u32,
    lead: String,
    /// `BAND_HOT` and the like, for the top leads.
    band: String,
    /// An attribute filter on the top leads: `attribute` is `equals` (a value, or a range of
    /// numbers such as "500-999").
    attribute: String,
    equals: String,
    /// Top leads: only those an agent could claim now; leave out finished ones.
    callable_now: bool,
    exclude_finished: bool,
    /// Alerts: the latest crossings first, this many.
    recent: u32,
    /// Top leads: only those with this text in their id or display attributes.
    search: String,
}

/// Serves the console until `closing` turns true, over TLS when `tls` is given.
pub async fn serve<S: Services>(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    services: S,
    admission: AdmissionLayer,
    mut closing: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let messages = DescriptorPool::decode(leadscore_proto::FILE_DESCRIPTOR_SET).expect("our descriptor set decodes");
    let console = Arc::new(Console { services, closing: closing.clone(), admission, messages });
    let file =
        |body: &'static str, kind: &'static str| get(move || async move { ([(header::CONTENT_TYPE, kind)], body) });
    let router = Router::new()
        .route("/", file(INDEX, "text/html; charset=utf-8"))
        .route("/app.js", file(APP, "text/javascript; charset=utf-8"))
        .route("/style.css", file(STYLE, "text/css; charset=utf-8"))
        .route("/chart.js", file(CHART, "text/javascript; charset=utf-8"))
        .route("/api/campaigns", get(campaigns::<S>))
        .route("/api/stats", get(stats::<S>))
        .route("/api/distribution", get(distribution::<S>))
        .route("/api/top", get(top_leads::<S>))
        .route("/api/accounts", get(top_accounts::<S>))
        .route("/api/lead", get(lead::<S>))
        .route("/api/explain", get(explain::<S>))
        .route("/api/history", get(history::<S>))
        .route("/api/wallboard", get(wallboard::<S>))
        .route("/api/scorers", get(scorers::<S>))
        .route("/api/validation", get(validation::<S>))
        .route("/api/watch/scores", get(watch_scores::<S>))
        .route("/api/watch/top", get(watch_top::<S>))
        .route("/api/watch/routing", get(watch_routing::<S>))
        .route("/api/watch/wallboard", get(watch_wallboard::<S>))
        .layer(axum::middleware::map_response(guarded))
        .with_state(console);
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    match tls {
        None => axum::serve(listener, router).with_graceful_shutdown(closed).await,
        Some(tls) => {
            let local = listener.local_addr()?;
            let connections = Box::pin(tls.incoming(listener, Speaks::Http1));
            axum::serve(Secured { connections, local }, router).with_graceful_shutdown(closed).await
        }
    }
}

/// What every answer tells the browser: take each file as the type it is sent as, run only
/// the console's own script and style, and never show the console inside another site's frame.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
];

async fn guarded(mut response: axum::response::Response) -> axum::response::Response {
    for (name, value) in SECURITY_HEADERS {
        response.headers_mut().insert(name, header::HeaderValue::from_static(value));
    }
    response
}

/// Connections whose TLS handshake is done, as axum takes them.
struct Secured<S> {
    connections: S,
    local: SocketAddr,
}

impl<S> axum::serve::Listener for Secured<S>
where
    S: Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Unpin + Send + 'static,
{
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.connections.next().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.peer_addr().unwrap_or(self.local);
                    return (stream, peer);
                }
                // Failed handshakes were logged where they failed.
                Some(Err(_)) => continue,
                // The accepting ended: the server is closing.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A refusal or failure, as JSON with the gRPC code and message, under the nearest HTTP status.
struct Refusal(Status);

impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        Self(status)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let retry_after = self.0.metadata().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = match self.0.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body =
            json!({ "code": crate::ops::telemetry::code_name(self.0.code() as i32), "message": self.0.message() });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after.and_then(|s| s.parse().ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

type Answer = Result<Json<Value>, Refusal>;
type Permit = Option<tokio::sync::OwnedSemaphorePermit>;

impl<S> Console<S> {
    /// The caller, if it may call the gRPC method `method` (`Service/Method`) now, and the
    /// permit to hold while its call is served (until its answer starts).
    fn admit(&self, headers: &HeaderMap, method: &str) -> Result<(Option<Caller>, Permit), Refusal> {
        Ok(self.admission.admit(&format!("/leadscore.v1.{method}"), headers)?)
    }

    /// A message as protobuf's canonical JSON (as grpcurl prints it), zeros included.
    fn json<M: Message>(&self, name: &str, message: &M) -> Value {
        let descriptor = self.messages.get_message_by_name(&format!("leadscore.v1.{name}")).expect("a message of ours");
        let dynamic =
            DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).expect("it was just encoded");
        let options = SerializeOptions::new().skip_default_fields(false).stringify_64_bit_integers(false);
        dynamic.serialize_with_options(serde_json::value::Serializer, &options).expect("JSON takes any message")
    }

    /// A stream's messages, collected.
    async fn all<T>(&self, stream: impl Stream<Item = Result<T, Status>>) -> Result<Vec<T>, Status> {
        stream.collect::<Result<Vec<T>, Status>>().await
    }
}

/// A request as the gRPC service receives it, with its caller.
fn request<T>(message: T, caller: Option<Caller>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    request
}

async fn campaigns<S: Services>(State(c): Shared<S>, headers: HeaderMap) -> Answer {
    let _admitted = c.admit(&headers, "AdminService/GetConfig")?;
    Ok(Json(json!({ "campaigns": c.services.campaign_names()? })))
}

async fn stats<S: Services>(State(c): Shared<S>, headers: HeaderMap) -> Answer {
    let (caller, _permit) = c.admit(&headers, "AdminService/Stats")?;
    let answer = AdminService::stats(&c.services, request(pb::StatsRequest {}, caller)).await?;
    Ok(Json(c.json("StatsResponse", answer.get_ref())))
}

async fn distribution<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "ScoringService/ScoreDistribution")?;
    let asked = pb::ScoreDistributionRequest { campaign: p.campaign, bins: p.bins };
    let answer = ScoringService::score_distribution(&c.services, request(asked, caller)).await?;
    Ok(Json(c.json("ScoreDistributionResponse", answer.get_ref())))
}

/// What the console's "is" box asks of an attribute: "500-999", ">= 500" or "<= 100" a range
/// of numbers, anything else a value ("India", "640").
fn attribute_match(text: String) -> pb::attribute_filter::Match {
    use pb::attribute_filter::Match;
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    let range = |min, max| Match::Range(pb::NumericRange { min, max });
    let trimmed = text.trim();
    if let Some(min) = trimmed.strip_prefix(">=").and_then(number) {
        return range(Some(min), None);
    }
    if let Some(max) = trimmed.strip_prefix("<=").and_then(number) {
        return range(None, Some(max));
    }
    // The dash after the first character, so that "-5" stays a value.
    if let Some((min, max)) =
        trimmed.get(1..).and_then(|rest| rest.split_once('-')).map(|(a, b)| (&trimmed[..1 + a.len()], b))
        && let (Some(min), Some(max)) = (number(min), number(max))
    {
        return range(Some(min), Some(max));
    }
    Match::Equals(pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Text(text)) })
}

/// The top leads' request a page's filters make.
fn top_request(p: Params) -> Result<pb::TopLeadsRequest, Status> {
    let bands = match p.band.as_str() {
        "" => Vec::new(),
        name => {
            vec![pb::Band::from_str_name(name).ok_or_else(|| Status::invalid_argument("band: unknown band"))? as i32]
        }
    };
    let filters = match p.attribute.as_str() {
        "" => Vec::new(),
        attribute => {
            vec![pb::AttributeFilter { attribute: attribute.into(), r#match: Some(attribute_match(p.equals)) }]
        }
    };
    Ok(pb::TopLeadsRequest {
        campaign: p.campaign,
        limit: p.limit.unwrap_or(50),
        bands,
        filters,
        explain: true,
        callable_now: p.callable_now,
        exclude_finished: p.exclude_finished,
        search: p.search,
    })
}

async fn top_leads<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "ScoringService/TopLeads")?;
    let asked = top_request(p)?;
    let stream = ScoringService::top_leads(&c.services, request(asked, caller)).await?.into_inner();
    let leads = c.all(stream).await?;
    Ok(Json(json!({ "leads": leads.iter().map(|l| c.json("RankedLead", l)).collect::<Vec<_>>() })))
}

async fn top_accounts<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "ScoringService/TopAccounts")?;
    let asked = pb::TopAccountsRequest { campaign: p.campaign, limit: p.limit.unwrap_or(20), leads_per_account: 0 };
    let stream = ScoringService::top_accounts(&c.services, request(asked, caller)).await?.into_inner();
    let accounts = c.all(stream).await?;
    Ok(Json(json!({ "accounts": accounts.iter().map(|a| c.json("RankedAccount", a)).collect::<Vec<_>>() })))
}

async fn lead<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "LeadService/GetLead")?;
    let asked = pb::GetLeadRequest { id: p.lead, include_events: false };
    let answer = LeadService::get_lead(&c.services, request(asked, caller)).await?;
    Ok(Json(c.json("GetLeadResponse", answer.get_ref())))
}

async fn explain<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "ScoringService/Explain")?;
    let asked = pb::ExplainRequest { contact_curve: false, lead_id: p.lead, campaign: p.campaign };
    let answer = ScoringService::explain(&c.services, request(asked, caller)).await?;
    Ok(Json(c.json("ExplainResponse", answer.get_ref())))
}

async fn history<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "ScoringService/ScoreHistory")?;
    let asked = pb::ScoreHistoryRequest { lead_id: p.lead, campaign: p.campaign };
    let answer = ScoringService::score_history(&c.services, request(asked, caller)).await?;
    Ok(Json(c.json("ScoreHistoryResponse", answer.get_ref())))
}

async fn wallboard<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "DialerService/Wallboard")?;
    let asked = pb::WallboardRequest { campaign: p.campaign, minutes: p.minutes };
    let answer = DialerService::wallboard(&c.services, request(asked, caller)).await?;
    Ok(Json(c.json("WallboardResponse", answer.get_ref())))
}

async fn scorers<S: Services>(State(c): Shared<S>, headers: HeaderMap) -> Answer {
    let (caller, _permit) = c.admit(&headers, "AdminService/ListScorers")?;
    let answer = AdminService::list_scorers(&c.services, request(pb::ListScorersRequest {}, caller)).await?;
    Ok(Json(c.json("ListScorersResponse", answer.get_ref())))
}

async fn validation<S: Services>(State(c): Shared<S>, headers: HeaderMap, Query(p): Query<Params>) -> Answer {
    let (caller, _permit) = c.admit(&headers, "AdminService/ValidationReport")?;
    let asked = pb::ValidationReportRequest { campaign: p.campaign };
    let answer = AdminService::validation_report(&c.services, request(asked, caller)).await?;
    Ok(Json(c.json("ValidationReportResponse", answer.get_ref())))
}

/// A gRPC stream as server-sent events named `name`, each message as canonical JSON; a
/// failure ends the stream with an `error` event.
fn events<S: Send + Sync + 'static, T: Message + 'static>(
    c: &Arc<Console<S>>,
    name: &'static str,
    message: &'static str,
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response {
    let c = c.clone();
    let events = stream.map(move |item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(item) => Event::default().event(name).data(c.json(message, &item).to_string()),
            Err(status) => Event::default().event("error").data(status.message()),
        })
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

async fn watch_scores<S: Services>(
    State(c): Shared<S>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Response, Refusal> {
    let (caller, _permit) = c.admit(&headers, "ScoringService/WatchScores")?;
    let asked = pb::WatchScoresRequest { campaign: p.campaign, bands: Vec::new(), recent: p.recent };
    let stream = ScoringService::watch_scores(&c.services, request(asked, caller)).await?.into_inner();
    Ok(events(&c, "crossing", "BandCrossing", stream))
}

async fn watch_top<S: Services>(
    State(c): Shared<S>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Response, Refusal> {
    let (caller, _permit) = c.admit(&headers, "ScoringService/WatchTopLeads")?;
    let asked = top_request(p)?;
    let stream = ScoringService::watch_top_leads(&c.services, request(asked, caller)).await?.into_inner();
    Ok(events(&c, "top", "WatchTopLeadsResponse", stream))
}

async fn watch_routing<S: Services>(State(c): Shared<S>, headers: HeaderMap) -> Result<Response, Refusal> {
    let (caller, _permit) = c.admit(&headers, "RoutingService/WatchRouting")?;
    let asked = pb::WatchRoutingRequest::default();
    let stream = RoutingService::watch_routing(&c.services, request(asked, caller)).await?.into_inner();
    Ok(events(&c, "decision", "RoutingDecision", stream))
}

/// The wallboard now, then again every `WALLBOARD_EVERY`, until the server closes.
async fn watch_wallboard<S: Services>(
    State(c): Shared<S>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Response, Refusal> {
    let (caller, _permit) = c.admit(&headers, "DialerService/Wallboard")?;
    let asked = pb::WallboardRequest { campaign: p.campaign, minutes: p.minutes };
    // The first answer before the stream, so that a bad request is refused rather than streamed.
    let first = DialerService::wallboard(&c.services, request(asked.clone(), caller.clone())).await?.into_inner();
    let (services, closing) = (c.services.clone(), c.closing.clone());
    let next = tokio::time::Instant::now() + WALLBOARD_EVERY;
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(next, WALLBOARD_EVERY));
    let later = ticks.take_while(move |_| !*closing.borrow()).then(move |_| {
        let (services, asked, caller) = (services.clone(), asked.clone(), caller.clone());
        async move { DialerService::wallboard(&services, request(asked, caller)).await.map(|a| a.into_inner()) }
    });
    Ok(events(&c, "wallboard", "WallboardResponse", tokio_stream::once(Ok(first)).chain(later)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::attribute_filter::Match;

    #[test]
    fn the_is_box_reads_ranges_of_numbers_and_values() {
        let range = |min, max| Match::Range(pb::NumericRange { min, max });
        let value =
            |text: &str| Match::Equals(pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Text(text.into())) });
        assert_eq!(attribute_match("500-999".into()), range(Some(500.0), Some(999.0)));
        assert_eq!(attribute_match(" -5 - 5 ".into()), range(Some(-5.0), Some(5.0)));
        assert_eq!(attribute_match(">= 500".into()), range(Some(500.0), None));
        assert_eq!(attribute_match("<=100".into()), range(None, Some(100.0)));
        for text in ["India", "640", "-5", "2026-06-24", "a-b"] {
            assert_eq!(attribute_match(text.into()), value(text), "{text}");
        }
    }
}

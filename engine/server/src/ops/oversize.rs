//! A message over its size limit answers RESOURCE_EXHAUSTED, as gRPC's own implementations do,
//! naming the setting that sets the limit. tonic answers it OUT_OF_RANGE, with a message that
//! names no setting.

use hyper::http::{HeaderMap, HeaderName};
use leadscore_proto::tonic::{Code, Status};

use crate::api::status::detailed;

/// The header (or trailer) that carries a call's status code: a constant, so reading it on
/// every call parses no name.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// If `headers` (a headers-only answer's, or the trailers) carry tonic's refusal of a message
/// over the limit on a call to `path`, puts RESOURCE_EXHAUSTED naming the setting in its place.
/// tonic refuses with OUT_OF_RANGE, which our own code never answers, or, for a compressed
/// request that decompresses past the limit, RESOURCE_EXHAUSTED: the status code alone rules
/// out nearly every answer at the cost of a comparison.
pub fn rewrite(headers: &mut HeaderMap, path: &str) {
    if !matches!(headers.get(GRPC_STATUS).map(|code| code.as_bytes()), Some(b"11" | b"8")) {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else { return };
    let Some((what, limit)) = parse(status.message()) else { return };
    let (service, family) = family(path);
    let message = format!(
        "{what}, over the {limit}-byte limit on {service} messages \
         (limits.message_bytes.{family}; families without their own take server.max_message_bytes)"
    );
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    let key = format!("limits.message_bytes.{family}");
    let status =
        detailed(Code::ResourceExhausted, message, "MESSAGE_TOO_LARGE", &[("setting", key)], Default::default());
    // Adding a status made of text and encoded details cannot fail.
    let _ = status.add_header(headers);
}

/// What was too large ("the request is 20971525 bytes") and the limit, from tonic's message.
fn parse(message: &str) -> Option<(String, u64)> {
    if let Some(rest) = message.strip_prefix("Error decompressing: size limit, of ") {
        let limit = rest.strip_suffix(" bytes, exceeded while decompressing message")?;
        return Some(("the request decompresses to more".to_owned(), limit.parse().ok()?));
    }
    let (which, rest) = if let Some(rest) = message.strip_prefix("Error, decoded message length too large: found ") {
        ("request", rest)
    } else {
        ("answer", message.strip_prefix("Error, encoded message length too large: found ")?)
    };
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let (found, limit): (u64, u64) = (found.parse().ok()?, rest.strip_suffix(" bytes")?.parse().ok()?);
    Some((format!("the {which} is {found} bytes"), limit))
}

/// The service a path calls and its family in `limits.message_bytes`.
fn family(path: &str) -> (&str, &'static str) {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    let family = match service.rsplit('.').next().unwrap_or_default() {
        "LeadService" => "leads",
        "ScoringService" => "scoring",
        "RoutingService" => "routing",
        "AdminService" => "admin",
        // The cluster's calls between nodes take the dialer's bound (see `node.rs`).
        _ => "dialer",
    };
    (service, family)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` as a call to `path` answers it once rewritten.
    fn rewritten(status: Status, path: &str) -> Status {
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        rewrite(&mut headers, path);
        Status::from_header_map(&headers).unwrap()
    }

    #[test]
    fn tonics_refusals_become_resource_exhausted_naming_the_setting() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 20971525 bytes, the limit is: 16777216 bytes",
        );
        let status = rewritten(tonic, "/leadscore.v1.LeadService/UpsertLeads");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request is 20971525 bytes, over the 16777216-byte limit on leadscore.v1.LeadService messages \
             (limits.message_bytes.leads; families without their own take server.max_message_bytes)"
        );
    }

    #[test]
    fn a_request_decompressing_past_the_limit_names_the_setting_too() {
        let tonic = Status::resource_exhausted(
            "Error decompressing: size limit, of 1024 bytes, exceeded while decompressing message",
        );
        let status = rewritten(tonic, "/leadscore.v1.ScoringService/ScoreBatch");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().starts_with("the request decompresses to more, over the 1024-byte limit"));
        assert!(status.message().contains("limits.message_bytes.scoring"), "{}", status.message());
    }

    #[test]
    fn other_statuses_are_left_alone() {
        let ours = [
            Status::out_of_range("a range of our own"),
            Status::invalid_argument("x: must be set"),
            Status::resource_exhausted("token \"busy\" is over its rate"),
        ];
        for status in ours {
            let mut headers = HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            let before = headers.clone();
            rewrite(&mut headers, "/leadscore.v1.LeadService/UpsertLeads");
            assert_eq!(headers, before);
        }
    }
}

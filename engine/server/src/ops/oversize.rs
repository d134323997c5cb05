//! A message over its size limit answers RESOURCE_EXHAUSTED, as gRPC's own implementations do,
//! naming the setting that sets the limit. tonic answers it OUT_OF_RANGE, with a message that
//! names no setting.

use hyper::http::HeaderMap;
use leadscore_proto::tonic::Status;

/// If `headers` (a headers-only answer's, or the trailers) carry tonic's refusal of a message
/// over the limit on a call to `path`, puts RESOURCE_EXHAUSTED in its place. Our own code
/// never answers OUT_OF_RANGE, so the status code alone rules out nearly every answer at the
/// cost of one comparison.
pub fn rewrite(headers: &mut HeaderMap, path: &str) {
    if headers.get("grpc-status").map(|code| code.as_bytes()) != Some(b"11") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else { return };
    let Some((which, found, limit)) = parse(status.message()) else { return };
    let (service, family) = family(path);
    let message = format!(
        "the {which} is {found} bytes, over the {limit}-byte limit on {service} messages \
         (limits.message_bytes.{family}; families without their own take server.max_message_bytes)"
    );
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    // Adding a status made of plain text cannot fail.
    let _ = Status::resource_exhausted(message).add_header(headers);
}

/// "request" or "answer", the size found and the limit, from tonic's message.
fn parse(message: &str) -> Option<(&'static str, u64, u64)> {
    let (which, rest) = if let Some(rest) = message.strip_prefix("Error, decoded message length too large: found ") {
        ("request", rest)
    } else {
        ("answer", message.strip_prefix("Error, encoded message length too large: found ")?)
    };
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((which, found.parse().ok()?, limit.parse().ok()?))
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

    #[test]
    fn tonics_refusals_become_resource_exhausted_naming_the_setting() {
        let mut headers = HeaderMap::new();
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 20971525 bytes, the limit is: 16777216 bytes",
        );
        tonic.add_header(&mut headers).unwrap();
        rewrite(&mut headers, "/leadscore.v1.LeadService/UpsertLeads");
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), leadscore_proto::tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request is 20971525 bytes, over the 16777216-byte limit on leadscore.v1.LeadService messages \
             (limits.message_bytes.leads; families without their own take server.max_message_bytes)"
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for status in [Status::out_of_range("a range of our own"), Status::invalid_argument("x: must be set")] {
            let mut headers = HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            let before = headers.clone();
            rewrite(&mut headers, "/leadscore.v1.LeadService/UpsertLeads");
            assert_eq!(headers, before);
        }
    }
}

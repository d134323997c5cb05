//! Who may call what: bearer tokens (`authorization: Bearer <token>`), known by the SHA-256 of
//! their text, each with roles; and the role every RPC needs. `admission` checks each call
//! before it is decoded and hands the handler the caller (`Caller`, a request extension).
//! Health and reflection stay open.

use std::collections::HashMap;
use std::sync::Arc;

use leadscore_config::tokens::{digest, parse_hex};
use leadscore_config::{AuthConfig, ROLES};
use leadscore_proto::tonic::codegen::http;
use leadscore_proto::tonic::{Code, Status};

use crate::api::status::detailed;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// UpsertLeads, RecordEvents, ImportLeads.
    Ingest,
    /// GetLead, Stats, ListScorers, GetConfig.
    Reader,
    /// Every ScoringService call.
    Scorer,
    /// DialerService, Route, WatchRouting, SetAgentState.
    Dialer,
    /// EraseLead, and changing a lead's objection.
    Privacy,
    /// Everything.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        ROLES[self as usize]
    }

    fn from_name(name: &str) -> Option<Self> {
        let all = [Role::Ingest, Role::Reader, Role::Scorer, Role::Dialer, Role::Privacy, Role::Admin];
        all.into_iter().find(|role| role.name() == name)
    }

    /// The role a gRPC method (`/package.Service/Method`) needs; `None` for health and
    /// reflection, which are open. A method of ours not listed needs `admin`.
    pub fn for_method(path: &str) -> Option<Self> {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        let Some(service) = service.strip_prefix("leadscore.v1.") else {
            let open = service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.");
            return if open { None } else { Some(Role::Admin) };
        };
        Some(match (service, method) {
            ("LeadService", "UpsertLeads" | "RecordEvents" | "ImportLeads") => Role::Ingest,
            ("LeadService", "GetLead") | ("AdminService", "Stats" | "ListScorers" | "GetConfig") => Role::Reader,
            ("ScoringService", _) | ("ClusterService", "Distributions" | "AccountShares" | "TopKeys" | "Ranked") => {
                Role::Scorer
            }
            ("DialerService", _)
            | ("RoutingService", "Route" | "WatchRouting" | "SetAgentState")
            | ("ClusterService", "QueueHeads" | "Mark" | "Revocations" | "AgentLoads") => Role::Dialer,
            ("LeadService", "EraseLead") => Role::Privacy,
            _ => Role::Admin,
        })
    }
}

/// Who made a call, as its token names it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: Arc<str>,
    roles: u8,
}

impl Caller {
    /// Whether the caller holds this role (an admin holds every role).
    pub fn may(&self, role: Role) -> bool {
        self.roles & (1 << role as u8 | 1 << Role::Admin as u8) != 0
    }
}

/// The name of a call's caller, as the audit trail records it; empty on a server without
/// tokens.
pub fn actor<T>(request: &leadscore_proto::tonic::Request<T>) -> String {
    request.extensions().get::<Caller>().map_or_else(String::new, |caller| caller.name.to_string())
}

/// Whether a call's caller holds `role`: a server without tokens lets every call through.
pub fn allows(caller: Option<&Caller>, role: Role) -> bool {
    caller.is_none_or(|caller| caller.may(role))
}

/// The configured tokens, by the SHA-256 of their text. The keys are digests, which no caller
/// can steer, so the fast hasher serves where SipHash would only add cost to every call.
#[derive(Debug)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Caller, foldhash::fast::RandomState>,
}

impl Tokens {
    /// `None` when no token is configured: calls are not checked.
    pub fn new(config: &AuthConfig) -> Option<Self> {
        let mut by_digest = HashMap::default();
        for token in &config.tokens {
            // The configuration was validated: 64 hex digits, known roles.
            let Some(digest) = parse_hex(&token.sha256) else { continue };
            let roles = token.roles.iter().filter_map(|r| Role::from_name(r)).fold(0, |all, r| all | 1 << r as u8);
            by_digest.insert(digest, Caller { name: Arc::from(token.name.as_str()), roles });
        }
        (!by_digest.is_empty()).then_some(Self { by_digest })
    }

    /// The caller of a call to `path` with these headers, or why it may not call: no, an
    /// unknown or more than one token is UNAUTHENTICATED, a token without the role
    /// PERMISSION_DENIED.
    ///
    /// The token is the text after `Bearer` (any case) and its spaces. Whitespace around the
    /// header's value is not part of it, as HTTP says of every field (RFC 9110, 5.5), so a
    /// trailing space or tab is ignored; tokens themselves never hold whitespace. Two
    /// `authorization` headers are refused rather than one picked: a proxy that adds its own
    /// must not decide who calls.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Caller>, Status> {
        let Some(role) = Role::for_method(path) else { return Ok(None) };
        let mut sent = headers.get_all(http::header::AUTHORIZATION).iter();
        let (first, more) = (sent.next(), sent.count());
        let refused =
            |message: String, reason| detailed(Code::Unauthenticated, message, reason, &[], Default::default());
        if more > 0 {
            let message = format!("send one `authorization` header; this call sent {}", more + 1);
            return Err(refused(message, "TOKEN_AMBIGUOUS"));
        }
        let bearer = first
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = bearer else {
            return Err(refused("send `authorization: Bearer <token>`".into(), "TOKEN_MISSING"));
        };
        let Some(caller) = self.by_digest.get(&digest(token)) else {
            return Err(refused("unknown token".into(), "TOKEN_UNKNOWN"));
        };
        if !caller.may(role) {
            let method = path.trim_start_matches('/');
            let message = format!("token {:?} lacks the `{}` role, which {method} needs", caller.name, role.name());
            let metadata = [("role", role.name().to_owned()), ("method", method.to_owned())];
            return Err(detailed(Code::PermissionDenied, message, "ROLE_MISSING", &metadata, Default::default()));
        }
        Ok(Some(caller.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_config::TokenConfig;
    use leadscore_config::tokens::{hex, new_token};

    fn tokens(roles: &[&str]) -> (Tokens, String) {
        let (token, _) = new_token("t", &[]);
        let config = AuthConfig {
            tokens: vec![TokenConfig {
                name: "ops".into(),
                sha256: hex(&digest(&token)),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            }],
        };
        (Tokens::new(&config).unwrap(), token)
    }

    fn headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn roles_admit_their_methods_and_admin_admits_all() {
        let (dialer, token) = tokens(&["dialer"]);
        let bearer = headers(&format!("Bearer {token}"));
        assert!(dialer.check("/leadscore.v1.DialerService/NextLead", &bearer).unwrap().is_some());
        let denied = dialer.check("/leadscore.v1.LeadService/EraseLead", &bearer).unwrap_err();
        assert_eq!(denied.code(), leadscore_proto::tonic::Code::PermissionDenied);
        assert!(denied.message().contains("`privacy`"), "{}", denied.message());
        let (admin, token) = tokens(&["admin"]);
        let bearer = headers(&format!("bearer {token}"));
        assert!(admin.check("/leadscore.v1.AdminService/UpdateConfig", &bearer).unwrap().is_some());
        assert!(admin.check("/leadscore.v1.LeadService/EraseLead", &bearer).is_ok());
    }

    #[test]
    fn health_and_reflection_are_open_and_anything_else_needs_a_known_token() {
        let (tokens, _) = tokens(&["reader"]);
        let none = http::HeaderMap::new();
        assert!(tokens.check("/grpc.health.v1.Health/Check", &none).unwrap().is_none());
        assert!(tokens.check("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &none).is_ok());
        let code =
            |headers: &http::HeaderMap| tokens.check("/leadscore.v1.LeadService/GetLead", headers).unwrap_err().code();
        assert_eq!(code(&none), leadscore_proto::tonic::Code::Unauthenticated);
        assert_eq!(code(&headers("Bearer ls_wrong")), leadscore_proto::tonic::Code::Unauthenticated);
        assert_eq!(code(&headers("Basic abc")), leadscore_proto::tonic::Code::Unauthenticated);
        assert_eq!(Role::for_method("/other.Service/Call"), Some(Role::Admin));
    }

    #[test]
    fn surrounding_whitespace_is_ignored_and_two_headers_are_refused() {
        let (tokens, token) = tokens(&["reader"]);
        let path = "/leadscore.v1.LeadService/GetLead";
        for sent in [format!("Bearer {token} "), format!("Bearer {token}\t"), format!("bearer  {token}")] {
            assert!(tokens.check(path, &headers(&sent)).unwrap().is_some(), "{sent:?}");
        }
        let inside = format!("Bearer {} {}", &token[..10], &token[10..]);
        assert_eq!(
            tokens.check(path, &headers(&inside)).unwrap_err().code(),
            leadscore_proto::tonic::Code::Unauthenticated
        );
        let mut twice = headers(&format!("Bearer {token}"));
        twice.append(http::header::AUTHORIZATION, "Bearer ls_other".parse().unwrap());
        let refused = tokens.check(path, &twice).unwrap_err();
        assert_eq!(refused.code(), leadscore_proto::tonic::Code::Unauthenticated);
        assert!(refused.message().contains("one `authorization` header"), "{}", refused.message());
    }

    #[test]
    fn a_new_token_is_admitted_by_the_lines_printed_with_it() {
        let (token, lines) = new_token("dialer-floor-1", &["dialer".into(), "scorer".into()]);
        let config: leadscore_config::Config = toml::from_str(&lines).unwrap();
        let tokens = Tokens::new(&config.auth).unwrap();
        let caller = tokens.check("/leadscore.v1.ScoringService/Score", &headers(&format!("Bearer {token}"))).unwrap();
        assert_eq!(&*caller.unwrap().name, "dialer-floor-1");
        assert_ne!(new_token("a", &[]).0, new_token("a", &[]).0);
    }
}

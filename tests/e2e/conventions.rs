//! The gRPC conventions client stacks expect: compressed calls both ways, and errors that carry
//! the standard details (google.rpc.ErrorInfo, BadRequest, ResourceInfo) beside their text.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use leadscore_proto::tonic::codec::CompressionEncoding::{Gzip, Zstd};
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Code, Status};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, lead};
use tonic_types::StatusExt;

/// A time when the test leads (New York) may be called.
const NOW_MS: i64 = 1_793_631_600_000;

fn scoring(channel: Channel) -> pb::scoring_service_client::ScoringServiceClient<Channel> {
    pb::scoring_service_client::ScoringServiceClient::new(channel).send_compressed(Gzip).accept_compressed(Gzip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_calls_are_taken_and_large_answers_come_back_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = TestServer::start_at(config(dir.path()), NOW_MS).await;
    server.upsert((0..40).map(|i| lead(&format!("lead-{i}"))).collect()).await;
    let channel = server.channel().await;

    // Unary: forty explained scores come back in a fraction of the bytes, in gzip or zstd.
    let explained =
        |i: usize| pb::ScoreRequest { lead: Some(lead(&format!("form-{i}"))), explain: true, ..Default::default() };
    let batch = pb::ScoreBatchRequest { requests: (0..40).map(explained).collect() };
    let (counted, received) = counting_proxy(server.address.trim_start_matches("http://")).await;
    let counted = Channel::from_shared(format!("http://{counted}")).unwrap().connect().await.unwrap();
    let mut plain = pb::scoring_service_client::ScoringServiceClient::new(counted.clone());
    let before = received.load(Ordering::SeqCst);
    let answer = plain.score_batch(batch.clone()).await.unwrap().into_inner();
    let plain_bytes = received.load(Ordering::SeqCst) - before;
    for encoding in [Gzip, Zstd] {
        let mut client = pb::scoring_service_client::ScoringServiceClient::new(counted.clone())
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let before = received.load(Ordering::SeqCst);
        let compressed = client.score_batch(batch.clone()).await.unwrap();
        let bytes = received.load(Ordering::SeqCst) - before;
        assert!(compressed.metadata().get("grpc-encoding").is_some());
        let compressed = compressed.into_inner();
        assert_eq!(compressed.scores.len(), answer.scores.len());
        assert!(bytes * 3 < plain_bytes, "{encoding:?}: {bytes} bytes against {plain_bytes} plain");
    }
    let mut client = scoring(channel.clone());
    client.score(pb::ScoreRequest { lead: Some(lead("form")), ..Default::default() }).await.unwrap();

    // Server streaming: every ranked lead arrives, plain (each is small: gzip would grow it).
    let request = pb::TopLeadsRequest { limit: 40, explain: true, ..Default::default() };
    let ranked = client.top_leads(request).await.unwrap();
    assert_eq!(ranked.metadata().get("grpc-encoding"), None);
    let mut ranked = ranked.into_inner();
    let mut count = 0;
    while let Some(lead) = ranked.message().await.unwrap() {
        assert!(!lead.score.unwrap().scorers.is_empty());
        count += 1;
    }
    assert_eq!(count, 40);

    // Both ways on a bidi stream: a hopper session claims and reports.
    let mut dialer =
        pb::dialer_service_client::DialerServiceClient::new(channel).send_compressed(Gzip).accept_compressed(Gzip);
    let (tx, requests) = tokio::sync::mpsc::channel(4);
    let send = |message| pb::DialerRequest { message: Some(message) };
    let hello = pb::DialerHello { agent_id: "agent-1".into(), ..Default::default() };
    tx.send(send(pb::dialer_request::Message::Hello(hello))).await.unwrap();
    tx.send(send(pb::dialer_request::Message::Credits(1))).await.unwrap();
    let mut pushed =
        dialer.dialer_session(tokio_stream::wrappers::ReceiverStream::new(requests)).await.unwrap().into_inner();
    let Some(pb::dialer_response::Message::Claim(claim)) = pushed.message().await.unwrap().unwrap().message else {
        panic!("a claim first");
    };
    let outcome = pb::Outcome {
        lease_id: claim.lease.unwrap().lease_id,
        result: pb::CallResult::NoAnswer.into(),
        ..Default::default()
    };
    tx.send(send(pb::dialer_request::Message::Outcome(outcome.clone()))).await.unwrap();
    let acknowledged = pushed.message().await.unwrap().unwrap().message;
    assert!(matches!(acknowledged, Some(pb::dialer_response::Message::OutcomeAck(_))), "{acknowledged:?}");
    // A refused message carries its reason too: the lease already ended with another result.
    let again = pb::Outcome { result: pb::CallResult::Busy.into(), ..outcome };
    tx.send(send(pb::dialer_request::Message::Outcome(again))).await.unwrap();
    let Some(pb::dialer_response::Message::Rejected(rejected)) = pushed.message().await.unwrap().unwrap().message
    else {
        panic!("the second outcome is rejected");
    };
    assert_eq!((rejected.code, rejected.reason.as_str()), (Code::FailedPrecondition as i32, "LEASE_ENDED"));
    server.stop().await;
}

/// A TCP proxy in front of `target`: its address, and the bytes it has passed back to clients.
async fn counting_proxy(target: &str) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let received = Arc::new(AtomicU64::new(0));
    let (target, counter) = (target.to_owned(), received.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&target).await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut buffer = vec![0; 64 << 10];
                    loop {
                        let n = tokio::io::AsyncReadExt::read(&mut server_read, &mut buffer).await?;
                        if n == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                        tokio::io::AsyncWriteExt::write_all(&mut client_write, &buffer[..n]).await?;
                    }
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    (address, received)
}

/// The `ErrorInfo` reason of a status, checking its domain.
fn reason(status: &Status) -> String {
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, "leadscore.v1");
    info.reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_their_field_their_resource_and_a_stable_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = TestServer::start_at(config(dir.path()), NOW_MS).await;
    let mut leads = server.leads().await;

    // INVALID_ARGUMENT: the field and its rule in a BadRequest, the text unchanged.
    let bad = pb::Lead { time_zone: "Mars/Olympus".into(), ..lead("a") };
    let refused = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("ok"), bad] }).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "leads[1].time_zone: unknown IANA time zone \"Mars/Olympus\"");
    let violations = refused.get_details_bad_request().expect("a BadRequest").field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "leads[1].time_zone");
    assert_eq!(violations[0].description, "unknown IANA time zone \"Mars/Olympus\"");
    assert_eq!(reason(&refused), "INVALID_FIELD");

    // NOT_FOUND: which resource.
    let missing = leads.get_lead(pb::GetLeadRequest { id: "nobody".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let resource = missing.get_details_resource_info().expect("a ResourceInfo");
    assert_eq!((resource.resource_type.as_str(), resource.resource_name.as_str()), ("lead", "nobody"));
    assert_eq!(reason(&missing), "LEAD_NOT_FOUND");

    // A lead erased while its lease was open: the outcome is refused as LEAD_ERASED.
    server.upsert(vec![lead("gone")]).await;
    let mut dialer = server.dialer().await;
    let request = pb::NextLeadRequest { agent_id: "agent-1".into(), ..Default::default() };
    let Some(pb::next_lead_response::Result::Claim(claim)) =
        dialer.next_lead(request).await.unwrap().into_inner().result
    else {
        panic!("the lead is callable");
    };
    leads.erase_lead(pb::EraseLeadRequest { id: "gone".into() }).await.unwrap();
    let outcome = pb::Outcome {
        lease_id: claim.lease.unwrap().lease_id,
        result: pb::CallResult::NoAnswer.into(),
        ..Default::default()
    };
    let refused = dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "LEAD_ERASED");

    // A configuration change on a stale version: ABORTED, saying which versions.
    let mut admin = server.admin().await;
    let toml = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner().toml;
    let stale = admin.update_config(pb::UpdateConfigRequest { toml, expected_version: 7 }).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(reason(&stale), "CONFIG_VERSION_CHANGED");
    let info = stale.get_details_error_info().unwrap();
    assert_eq!(info.metadata.get("current_version").map(String::as_str), Some("0"));
    server.stop().await;
}

/// Sends a message's bytes as they are, for a request no client would encode.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;

impl leadscore_proto::tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut leadscore_proto::tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        leadscore_proto::prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl leadscore_proto::tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::ScoreResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::ScoreResponse>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_does_not_parse_is_internal_and_the_next_one_is_served() {
    use leadscore_proto::prost::Message;
    use leadscore_proto::tonic::codegen::http::uri::PathAndQuery;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = TestServer::start_at(config(dir.path()), NOW_MS).await;
    let mut grpc = leadscore_proto::tonic::client::Grpc::new(server.channel().await);
    let request = pb::ScoreRequest { lead: Some(lead("form")), ..Default::default() }.encode_to_vec();
    let path = || PathAndQuery::from_static("/leadscore.v1.ScoringService/Score");
    let mut call = async |bytes: &[u8]| {
        grpc.ready().await.unwrap();
        grpc.unary(leadscore_proto::tonic::Request::new(bytes.to_vec()), path(), RawCodec).await
    };
    // Cut short inside a field: the codec refuses it as prost's does.
    let refused = call(&request[..request.len() - 3]).await.unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert!(refused.message().contains("buffer underflow"), "{}", refused.message());
    // The whole message, and then with a field this server does not know, are served.
    let score = call(&request).await.unwrap().into_inner().score.unwrap();
    assert_eq!(score.lead_id, "form");
    let mut unknown = request.clone();
    unknown.extend_from_slice(&[0xF8, 0x01, 0x07]); // field 31, varint 7
    assert_eq!(call(&unknown).await.unwrap().into_inner().score.unwrap().lead_id, "form");
}

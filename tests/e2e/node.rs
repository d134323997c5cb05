//! A Node.js service's calls (`examples/node`, grpc-js from npm) against the real binary, every
//! call on a gzip channel: unary, server-streaming and bidi calls are served, and a bad field,
//! a rate limit and an oversized request come back with the standard error details decoded.

use std::process::Command;

use leadscore_tests::{ChildServer, node_modules, workspace_root, zone_at_noon};

#[test]
fn a_grpc_js_client_on_gzip_is_served_and_decodes_the_error_details() {
    let dir = tempfile::tempdir().unwrap();
    let token = "ls_node-check";
    let digest = leadscore::config::tokens::hex(&leadscore::config::tokens::digest(token));
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = {data:?}\n\
         [limits]\nrate_per_token = 20.0\nburst_per_token = 40.0\n[limits.message_bytes]\nleads = 1048576\n\
         [[auth.tokens]]\nname = \"node\"\nsha256 = \"{digest}\"\nroles = [\"admin\"]\n",
        data = dir.path().join("data"),
    );
    std::fs::write(dir.path().join("leadscore.toml"), config).unwrap();
    let server = ChildServer::start(dir.path(), &["--config", "leadscore.toml"]).unwrap();
    let address = server.address.trim_start_matches("http://").to_owned();

    let script = workspace_root().join("examples").join("node").join("check.js");
    let output = Command::new("node")
        .arg(&script)
        .args(["--server", &address, "--token", token, "--zone", &zone_at_noon()])
        .env("NODE_PATH", node_modules())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "check.js failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();

    // Unary, server-streaming and bidi calls, each with gzip on.
    assert_eq!(seen["upserted"], 30);
    assert_eq!(seen["scored"], 30);
    assert_eq!(seen["ranked"], 30);
    assert_eq!(seen["hopper_outcomes"], 3);

    // INVALID_ARGUMENT (3): the field and its rule, and a reason to switch on.
    let bad = &seen["bad_field"];
    assert_eq!(bad["code"], 3);
    assert_eq!(bad["message"], "leads[0].time_zone: unknown IANA time zone \"Mars/Olympus\"");
    assert_eq!(bad["badRequest"]["field_violations"][0]["field"], "leads[0].time_zone");
    assert_eq!(bad["badRequest"]["field_violations"][0]["description"], "unknown IANA time zone \"Mars/Olympus\"");
    assert_eq!(bad["errorInfo"]["reason"], "INVALID_FIELD");
    assert_eq!(bad["errorInfo"]["domain"], "leadscore.v1");

    // RESOURCE_EXHAUSTED (8) for a request over the leads family's bound, naming the setting.
    let oversized = &seen["oversized"];
    assert_eq!(oversized["code"], 8, "{oversized}");
    assert!(oversized["message"].as_str().unwrap().contains("over the 1048576-byte limit"), "{oversized}");
    assert_eq!(oversized["errorInfo"]["reason"], "MESSAGE_TOO_LARGE");
    assert_eq!(oversized["errorInfo"]["metadata"]["setting"], "limits.message_bytes.leads");

    // RESOURCE_EXHAUSTED over the token's rate, with the wait in a RetryInfo.
    let limited = &seen["rate_limited"];
    assert_eq!(limited["code"], 8, "{limited}");
    assert_eq!(limited["errorInfo"]["reason"], "RATE_LIMITED");
    let delay = &limited["retryInfo"]["retry_delay"];
    let seconds = delay["seconds"].as_str().map_or(0.0, |s| s.parse::<f64>().unwrap())
        + delay["nanos"].as_f64().unwrap_or(0.0) / 1e9;
    assert!(seconds > 0.0 && seconds <= 0.05 + 1.0 / 20.0, "one call's worth of the rate: {delay}");
    server.terminate();
}

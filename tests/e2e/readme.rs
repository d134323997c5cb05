//! The README cannot drift: every grpcurl command in its `sh` blocks runs verbatim, in order,
//! against a real server, through grpcurl from PyPI. Only the address changes (the README's
//! `127.0.0.1:50051` and `localhost:50051` become the test server's), `LEASE_ID` becomes the
//! lease id of the last `NextLead` answer, and the clock stands on a weekday morning in Berlin,
//! where the README's leads live, so that its calls are inside their calling window. A command
//! must succeed, unless the comment below it gives the error (`#   Code: InvalidArgument`); a
//! stream (a `Watch…`) must still be running, without error, after two seconds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leadscore_tests::{TestServer, config, python_env, workspace_root};

/// Monday 2026-11-02 10:00 in Berlin.
const MONDAY_MORNING_MS: i64 = 1_794_042_000_000;

/// A grpcurl command of the README and the error code its comment expects, if any.
#[derive(Debug)]
struct Step {
    command: String,
    error: Option<String>,
}

/// The grpcurl commands of the README's `sh` blocks, in order. A command goes on over lines
/// ending in `\` and over a quoted argument that spans lines.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let (mut in_sh, mut open): (bool, Option<String>) = (false, None);
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(command) = open.as_mut() {
            command.push('\n');
            command.push_str(line);
        } else if line.starts_with("grpcurl ") {
            open = Some(line.to_string());
        } else if let Some(code) = line.trim_start_matches('#').trim().strip_prefix("Code: ") {
            let last = steps.last_mut().expect("an error comment follows a command");
            last.error = Some(code.split_whitespace().next().unwrap().to_string());
            continue;
        } else {
            continue;
        }
        let command = open.as_ref().unwrap();
        let unbalanced = command.matches('\'').count() % 2 == 1;
        if !unbalanced && !command.ends_with('\\') {
            steps.push(Step { command: open.take().unwrap(), error: None });
        }
    }
    steps
}

/// The lease id in a `NextLead` answer as grpcurl prints it.
fn lease_id(answer: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(answer).ok()?;
    Some(json["claim"]["lease"]["leaseId"].as_str()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpcurl_command_of_the_readme_answers_as_it_says() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let steps = steps(&readme);
    let written = readme.lines().filter(|line| line.starts_with("grpcurl ")).count();
    assert!(written > 20 && steps.len() == written, "{written} commands written, {} found: {steps:#?}", steps.len());

    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = TestServer::start_at(config(dir.path()), MONDAY_MORNING_MS).await;
    let address = server.address.trim_start_matches("http://").to_string();
    let bin = python_env().join("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut lease: Option<String> = None;
    for (n, step) in steps.iter().enumerate() {
        let mut command = step.command.replace("127.0.0.1:50051", &address).replace("localhost:50051", &address);
        if command.contains("LEASE_ID") {
            let lease =
                lease.as_deref().unwrap_or_else(|| panic!("step {n}: no NextLead answered with a lease before"));
            command = command.replace("LEASE_ID", lease);
        }
        let mut child = Command::new("bash")
            .args(["-c", &command])
            .env("PATH", &path)
            .env("ADMIN_TOKEN", "unchecked: this server has no tokens")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A stream runs until stopped: it passes if it is still running, quietly, after 2 s.
        let started = Instant::now();
        let streaming = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if started.elapsed() > Duration::from_secs(2) && step.command.contains("/Watch") {
                child.kill().unwrap();
                break true;
            }
            if started.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("step {n} did not answer within 30 s:\n{command}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let output = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let shown = format!("step {n}:\n{command}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        match (&step.error, streaming) {
            (None, true) => assert!(stderr.trim().is_empty(), "{shown}"),
            (None, false) => assert!(output.status.success(), "{shown}"),
            (Some(code), _) => {
                assert!(!output.status.success(), "{shown}");
                assert!(stderr.contains(&format!("Code: {code}")), "expected {code}: {shown}");
            }
        }
        if step.command.contains("DialerService/NextLead") {
            lease = Some(lease_id(&stdout).unwrap_or_else(|| panic!("NextLead claimed nothing: {shown}")));
        }
    }
    server.stop().await;
}

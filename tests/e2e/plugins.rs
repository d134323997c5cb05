//! The plugin loader through gRPC, with fixture libraries built in the workspace: broken
//! libraries are refused with the reason and logged, a panicking scorer fails only its calls
//! and is quarantined, and a reload swaps libraries while calls run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use leadscore::clock::SystemClock;
use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, TestServer, config, event, lead, plugin_library, text};

/// A plugin directory holding copies of these crates' libraries.
fn plugin_dir(crates: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in crates {
        add_plugin(dir.path(), name);
    }
    dir
}

fn add_plugin(dir: &Path, crate_name: &str) {
    let library = plugin_library(crate_name);
    std::fs::copy(&library, dir.join(library.file_name().unwrap())).unwrap();
}

/// A server loading every library in `plugins`, its default campaign weighing `weights`.
async fn start(data: &Path, plugins: &Path, weights: &[(&str, f64)], max_faults: u64) -> TestServer {
    let mut config = config(data);
    config.plugins.dir = plugins.to_owned();
    config.plugins.load = Vec::new();
    config.plugins.max_faults = max_faults;
    let default = config.campaigns.get_mut("default").unwrap();
    default.weights = weights.iter().map(|(name, weight)| (name.to_string(), *weight)).collect();
    TestServer::try_start(config, Arc::new(SystemClock)).await.unwrap()
}

fn request(id: &str, attributes: &[&str]) -> pb::ScoreRequest {
    let attributes = attributes.iter().map(|name| (name.to_string(), text("yes"))).collect();
    pb::ScoreRequest { lead: Some(pb::Lead { id: id.into(), attributes, ..Default::default() }), ..Default::default() }
}

async fn scorers(server: &TestServer) -> Vec<pb::ScorerInfo> {
    server.admin().await.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner().scorers
}

#[tokio::test]
async fn broken_libraries_are_refused_logged_and_the_server_runs_on() {
    let plugins = plugin_dir(&["fixture_good", "fixture_nan", "fixture_abi2", "fixture_nosymbol"]);
    std::fs::write(plugins.path().join("libjunk.so"), b"not a shared library").unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("leadscore.toml");
    let toml = format!(
        "[store]\nfsync = \"never\"\n[plugins]\ndir = {:?}\nload = []\n[campaigns.default.weights]\ngood = 1.0\n",
        plugins.path().display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let cwd = data.path().to_owned();
    let child = tokio::task::spawn_blocking(move || {
        let config = config.display().to_string();
        ChildServer::start(&cwd, &["--config", &config, "--listen", "127.0.0.1:0"])
    })
    .await
    .unwrap()
    .unwrap();

    let channel = leadscore_proto::tonic::transport::Channel::from_shared(child.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let listed = admin.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner().scorers;
    let status_of = |file: &str| {
        let info = listed.iter().find(|s| s.path.ends_with(file)).unwrap_or_else(|| panic!("{file} in {listed:?}"));
        (info.status(), info.status_reason.clone())
    };
    let (status, _) = status_of("libfixture_good.so");
    assert_eq!(status, pb::ScorerStatus::Active);
    let refusals = [
        ("libfixture_nan.so", "scorer `nan` failed its smoke test: scorer `nan` returned NaN for lead \"smoke-empty\""),
        (
            "libfixture_abi2.so",
            "built for plugin ABI major 2, this engine speaks ABI major 1: rebuild it against this engine's plugins/api (ABI 1)",
        ),
        ("libfixture_nosymbol.so", "no `leadscore_scorer_v1` symbol: not a Leadscore scorer plugin"),
        ("libjunk.so", "cannot be loaded"),
    ];
    for (file, reason) in refusals {
        let (status, why) = status_of(file);
        assert_eq!(status, pb::ScorerStatus::Refused, "{file}: {why}");
        assert!(why.contains(reason), "{file}: {why}");
        assert!(why.contains(file), "the reason names the file: {why}");
        let name = listed.iter().find(|s| s.path.ends_with(file)).unwrap().name.clone();
        assert_eq!(format!("lib{name}.so"), file, "a refused library is named as plugins.load names it");
    }

    let mut scoring = pb::scoring_service_client::ScoringServiceClient::new(channel);
    let score = scoring.score(request("a", &[])).await.unwrap().into_inner().score.unwrap();
    assert_eq!(score.score, 50.0);
    drop((admin, scoring));

    let (status, log) = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(status.success(), "{log}");
    for (file, reason) in refusals {
        let line = log.lines().find(|l| l.contains("scorer plugin refused") && l.contains(file));
        assert!(line.is_some_and(|l| l.contains(reason)), "no refusal of {file} in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_panicking_scorer_fails_its_calls_and_is_quarantined() {
    let plugins = plugin_dir(&["fixture_good", "fixture_panicky"]);
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), plugins.path(), &[("good", 1.0), ("panicky", 1.0)], 3).await;
    let mut scoring = server.scoring().await;

    let calm = scoring.score(request("calm", &[])).await.unwrap().into_inner().score.unwrap();
    assert_eq!(calm.score, 60.0, "50 + 10 points: {calm:?}");
    // An out-of-range score fails the call too, and counts as a fault but not a panic.
    let status = scoring.score(request("big", &["overflow"])).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("returned 150 for lead \"big\""), "{status:?}");
    let panicky = scorers(&server).await.into_iter().find(|s| s.name == "panicky").unwrap();
    assert_eq!((panicky.status(), panicky.panics, panicky.faults), (pb::ScorerStatus::Active, 0, 1));
    for attempt in 0..2 {
        let status = scoring.score(request(&format!("bomb-{attempt}"), &["explode"])).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(
            status.message().contains(&format!(
                "scorer `panicky` panicked: lead bomb-{attempt} exploded (at plugins/fixtures/panicky/src/lib.rs:"
            )),
            "{status:?}"
        );
    }

    let listed = scorers(&server).await;
    let panicky = listed.iter().find(|s| s.name == "panicky").unwrap();
    assert_eq!((panicky.status(), panicky.panics, panicky.faults), (pb::ScorerStatus::Quarantined, 2, 3));
    assert!(panicky.status_reason.starts_with("3 faults (the limit is 3)"), "{}", panicky.status_reason);

    // Out of service, it is left out of the composite; the good scorer carries on alone.
    let after = scoring.score(request("bomb-2", &["explode"])).await.unwrap().into_inner().score.unwrap();
    assert_eq!(after.score, 50.0);
    assert_eq!(after.scorers.iter().map(|s| s.scorer.as_str()).collect::<Vec<_>>(), ["good"]);
    // Asked why, it shows with no points and the reason.
    let explained = pb::ScoreRequest { explain: true, ..request("why", &[]) };
    let why = scoring.score(explained).await.unwrap().into_inner().score.unwrap();
    let out = why.scorers.iter().find(|s| s.scorer == "panicky").expect("the quarantined scorer is explained");
    assert_eq!((out.points, out.contribution), (0.0, 0.0));
    assert!(
        out.top_factors[0].detail.contains("quarantined") && out.top_factors[0].detail.contains("3 faults"),
        "{out:?}"
    );
    // Its time per lead counts the calls that scored, not the panics.
    assert!(panicky.ns_per_lead < 1e6, "{} ns a lead", panicky.ns_per_lead);
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_built_for_abi_minor_0_loads_and_its_points_are_its_score() {
    let plugins = plugin_dir(&["fixture_good", "fixture_minor0"]);
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), plugins.path(), &[("good", 1.0), ("old", 1.0)], 3).await;
    let listed = scorers(&server).await;
    let minor = |name: &str| listed.iter().find(|s| s.name == name).map(|s| (s.status(), s.abi_minor));
    assert_eq!(minor("old"), Some((pb::ScorerStatus::Active, 0)), "{listed:?}");
    assert_eq!(minor("good"), Some((pb::ScorerStatus::Active, 2)), "{listed:?}");

    let explained = pb::ScoreRequest { explain: true, ..request("a", &[]) };
    let score = server.scoring().await.score(explained).await.unwrap().into_inner().score.unwrap();
    // The old scorer would give 7 points if it were asked through minor 1's table; its header
    // has no such entry, so its score of 40 counts as its points.
    let old = score.scorers.iter().find(|s| s.scorer == "old").unwrap();
    assert_eq!((old.score, old.points, old.contribution), (40.0, 40.0, 40.0), "{score:?}");
    assert_eq!(old.top_factors.iter().map(|f| f.contribution).sum::<f64>(), 40.0);
    assert_eq!(score.score, 90.0, "40 + 50 points: {score:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_reload_under_concurrent_calls_loses_none() {
    let plugins = plugin_dir(&["fixture_good"]);
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), plugins.path(), &[("good", 1.0), ("engagement", 1.0)], 3).await;
    let loaded_at = |info: &pb::ScorerInfo| info.loaded_at.as_ref().map(|t| (t.seconds, t.nanos));
    let first_load = loaded_at(&scorers(&server).await[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut callers = Vec::new();
    for caller in 0..4 {
        let (stop, ok, failed, mut scoring) = (stop.clone(), ok.clone(), failed.clone(), server.scoring().await);
        callers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match scoring.score(request(&format!("c{caller}-{n}"), &[])).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(status) => {
                        eprintln!("call failed during reload: {status:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let mut admin = server.admin().await;
    for _ in 0..5 {
        admin.reload_scorers(pb::ReloadScorersRequest::default()).await.unwrap();
    }
    // A library dropped into the directory joins at the next reload.
    add_plugin(plugins.path(), "leadscore_engagement");
    let reloaded = admin.reload_scorers(pb::ReloadScorersRequest::default()).await.unwrap().into_inner().scorers;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }

    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 0);
    let mut names: Vec<&str> = reloaded.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["engagement", "good"]);
    assert!(reloaded.iter().all(|s| s.status() == pb::ScorerStatus::Active));
    assert!(reloaded.iter().all(|s| loaded_at(s) >= first_load));
    let score = server.scoring().await.score(request("after", &[])).await.unwrap().into_inner().score.unwrap();
    assert_eq!(score.score, 50.0, "50 + 0 points once engagement is in: {score:?}");
    server.stop().await;
}

#[test]
fn bench_plugin_reports_ns_per_lead_for_each_batch_size() {
    let library = plugin_library("leadscore_engagement");
    let output = std::process::Command::new(leadscore_tests::binary())
        .args(["bench-plugin", library.to_str().unwrap(), "--leads", "200", "--batch-sizes", "1,64", "--millis", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("engagement "), "{stdout}");
    let rows: Vec<(usize, f64)> = stdout
        .lines()
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].parse().unwrap(), cells[1].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.iter().map(|(batch, _)| *batch).collect::<Vec<_>>(), [1, 64]);
    assert!(rows.iter().all(|(_, ns)| *ns > 0.0), "{stdout}");

    // A library that is no plugin is refused with the loader's reason.
    let output = std::process::Command::new(leadscore_tests::binary())
        .args(["bench-plugin", plugin_library("fixture_nosymbol").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no `leadscore_scorer_v1` symbol"));
}

#[tokio::test]
async fn a_reload_of_a_broken_rebuild_keeps_the_working_scorer_and_names_the_library() {
    let plugins = plugin_dir(&["fixture_good"]);
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), plugins.path(), &[("good", 1.0)], 3).await;
    let before = server.scoring().await.score(request("a", &[])).await.unwrap().into_inner().score.unwrap();
    assert_eq!(before.score, 50.0);

    // The good library rebuilt against another ABI, in its place.
    let good = plugin_library("fixture_good");
    std::fs::copy(plugin_library("fixture_abi2"), plugins.path().join(good.file_name().unwrap())).unwrap();
    let mut admin = server.admin().await;
    let refused = admin.reload_scorers(pb::ReloadScorersRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), leadscore_proto::tonic::Code::FailedPrecondition);
    let name = good.file_name().unwrap().to_string_lossy().into_owned();
    assert!(refused.message().contains("the running scorers stay") && refused.message().contains(&name), "{refused:?}");
    let after = server.scoring().await.score(request("b", &[])).await.unwrap().into_inner().score.unwrap();
    assert_eq!(after.score, 50.0, "the working scorer still serves: {after:?}");
    let listed = scorers(&server).await;
    assert_eq!(listed.iter().filter(|s| s.status() == pb::ScorerStatus::Active).count(), 1, "{listed:?}");

    // Forced, what loads is taken: the scorer is dropped, on purpose.
    let forced = admin.reload_scorers(pb::ReloadScorersRequest { force: true }).await.unwrap().into_inner();
    assert!(forced.scorers.iter().all(|s| s.status() != pb::ScorerStatus::Active), "{forced:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_configuration_weighing_a_scorer_that_is_not_loaded_is_refused() {
    let plugins = plugin_dir(&["fixture_good"]);
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), plugins.path(), &[("good", 1.0)], 3).await;
    let mut admin = server.admin().await;
    let current = admin.get_config(pb::GetConfigRequest::default()).await.unwrap().into_inner();
    let mut next = leadscore::config::Config::parse(&current.toml).unwrap();
    next.campaigns.get_mut("default").unwrap().weights.insert("godo".into(), 1.0);
    let update = pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: current.version };
    let refused = admin.update_config(update).await.unwrap_err();
    assert_eq!(refused.code(), leadscore_proto::tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("campaigns.default.weights.godo: no scorer of that name is loaded (loaded: good)"),
        "{refused:?}"
    );
    let after = admin.get_config(pb::GetConfigRequest::default()).await.unwrap().into_inner();
    assert_eq!(after.version, current.version, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn libraries_load_by_name_from_the_first_directory_that_holds_them() {
    let (builtin, own) = (plugin_dir(&["fixture_good"]), plugin_dir(&["fixture_minor0"]));
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.plugins.dir = builtin.path().to_owned();
    config.plugins.extra_dirs = vec![own.path().to_owned()];
    config.plugins.load = vec!["fixture_good".into(), "fixture_minor0".into(), "fixture_missing".into()];
    config.campaigns.get_mut("default").unwrap().weights = [("good".to_string(), 1.0)].into();
    let server = TestServer::try_start(config, Arc::new(SystemClock)).await.unwrap();
    let listed = scorers(&server).await;
    let at =
        |file: &str| listed.iter().find(|s| s.path.ends_with(file)).unwrap_or_else(|| panic!("{file}: {listed:?}"));
    assert_eq!(at("libfixture_good.so").status(), pb::ScorerStatus::Active);
    let minor0 = at("libfixture_minor0.so");
    assert_eq!(minor0.status(), pb::ScorerStatus::Active, "{minor0:?}");
    assert!(minor0.path.starts_with(&own.path().display().to_string()), "{minor0:?}");
    let missing = at("libfixture_missing.so");
    assert_eq!(missing.status(), pb::ScorerStatus::Refused);
    assert!(
        missing.path.starts_with(&builtin.path().display().to_string()),
        "named in the first directory: {missing:?}"
    );
    server.stop().await;
}

/// Copies a folder, leaving out build output.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (path, name) = (entry.path(), entry.file_name());
        if path.is_dir() {
            if name != "target" {
                copy_tree(&path, &to.join(&name));
            }
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Builds the plugin template in `template`, with `features`; returns its library.
fn build_template(template: &Path, features: &[&str]) -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["build", "-q", "--manifest-path", template.join("Cargo.toml").to_str().unwrap()])
        .args(features.iter().flat_map(|f| ["--features", f]))
        .env("CARGO_TARGET_DIR", template.join("target"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    template.join("target/debug").join(format!(
        "{}budget{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_tree_plugin_builds_loads_by_name_swaps_and_benchmarks() {
    // The API crate and the template, copied out of the workspace as an author would.
    let outside = tempfile::tempdir().unwrap();
    let root = leadscore_tests::workspace_root();
    copy_tree(&root.join("plugins/api"), &outside.path().join("api"));
    let template = outside.path().join("template");
    copy_tree(&root.join("examples/plugin-template"), &template);
    let manifest = template.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("../../plugins/api", "../api");
    std::fs::write(&manifest, text).unwrap();
    let built = {
        let template = template.clone();
        tokio::task::spawn_blocking(move || build_template(&template, &[])).await.unwrap()
    };

    // Loaded by name from a directory of its own, beside the built-in scorers.
    let own = outside.path().join("mine");
    std::fs::create_dir_all(&own).unwrap();
    let installed = own.join(built.file_name().unwrap());
    std::fs::copy(&built, &installed).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.plugins.extra_dirs = vec![own.clone()];
    config.plugins.load.push("budget".into());
    config.campaigns.get_mut("default").unwrap().weights.insert("budget".into(), 1.0);
    let server = TestServer::try_start(config, Arc::new(SystemClock)).await.unwrap();
    let budget = |score: pb::LeadScore| score.scorers.iter().find(|s| s.scorer == "budget").map(|s| s.score);
    let lead = pb::Lead {
        id: "big".into(),
        attributes: [("budget".to_string(), leadscore_tests::number(30_000.0))].into(),
        ..Default::default()
    };
    let request = || pb::ScoreRequest { lead: Some(lead.clone()), ..Default::default() };
    let scored = server.scoring().await.score(request()).await.unwrap().into_inner().score.unwrap();
    assert_eq!(budget(scored), Some(30.0));

    // Rebuilt to give twice the points, swapped in while serving.
    let doubled = tokio::task::spawn_blocking(move || build_template(&template, &["double"])).await.unwrap();
    std::fs::copy(&doubled, &installed).unwrap();
    server.admin().await.reload_scorers(pb::ReloadScorersRequest::default()).await.unwrap();
    let scored = server.scoring().await.score(request()).await.unwrap().into_inner().score.unwrap();
    assert_eq!(budget(scored), Some(60.0));
    server.stop().await;

    // Measured the way the server calls it.
    let output = std::process::Command::new(leadscore_tests::binary())
        .args(["bench-plugin", installed.to_str().unwrap(), "--leads", "200", "--batch-sizes", "1,64", "--millis", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.starts_with("budget "), "{stdout}");
}

#[tokio::test]
async fn events_call_only_the_scorers_that_read_them_and_the_listing_says_which() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.upsert(vec![lead("a")]).await;
    let of = |listed: &[pb::ScorerInfo], name: &str| {
        let info = listed.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} in {listed:?}"));
        (info.attributes_only, info.calls)
    };
    let before = scorers(&server).await;
    let mut leads = server.leads().await;
    for n in 0..3 {
        let events = vec![event("a", &format!("e{n}"), "demo_request")];
        leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    }
    let after = scorers(&server).await;
    assert_eq!(of(&after, "fit"), (true, of(&before, "fit").1), "fit reads attributes alone: {after:?}");
    let (reads_all, calls) = of(&after, "engagement");
    assert!(!reads_all && calls >= of(&before, "engagement").1 + 3, "{after:?}");

    // The fit score kept is the one fit explains afresh.
    let request = pb::ExplainRequest { lead_id: "a".into(), ..Default::default() };
    let explained = server.scoring().await.explain(request).await.unwrap().into_inner().score.unwrap();
    let fit = explained.scorers.iter().find(|s| s.scorer == "fit").unwrap();
    assert!(fit.points > 0.0, "{fit:?}");
    assert_eq!(fit.top_factors.iter().map(|f| f.contribution).sum::<f64>(), fit.points, "{fit:?}");
    server.stop().await;
}

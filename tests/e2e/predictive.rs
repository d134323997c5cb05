//! The predictive scorer end to end on the real lead data: `leadscore train` writes a model, the
//! plugin serves it through gRPC with the probabilities training computed, explains them, and a
//! new model is deployed by reloading.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use leadscore::clock::SystemClock;
use leadscore_model::data::{ReadOptions, read_csv};
use leadscore_model::model::ModelFile;
use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, binary, config, workspace_root};

/// The ids and the staff-filled columns that give the outcome away (PROVENANCE.md).
const DROP: &str = "Prospect ID,Lead Number,Tags,Lead Quality,Lead Profile,Asymmetrique Activity Index,\
                    Asymmetrique Profile Index,Asymmetrique Activity Score,Asymmetrique Profile Score";

fn leads_csv() -> PathBuf {
    let csv = workspace_root().join("../shared/data/leads/Leads.csv");
    assert!(csv.exists(), "{} is missing: the shared data must sit beside the repository", csv.display());
    csv
}

/// Runs `leadscore train`; returns whether it succeeded and what it printed.
fn train(args: &[&str]) -> (bool, String) {
    let output = Command::new(binary()).arg("train").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn train_leads(model: &str, out: &Path) {
    let csv = leads_csv();
    let (ok, output) = train(&[
        "--csv",
        csv.to_str().unwrap(),
        "--target",
        "Converted",
        "--drop",
        DROP,
        "--model",
        model,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{output}");
}

/// A server serving the model at `model` as the only scorer of the default campaign.
async fn start(data: &Path, model: &Path) -> TestServer {
    let mut config = config(data);
    config.plugins.load = vec!["leadscore_predictive".into()];
    let settings = format!("model = {:?}", model.display().to_string()).parse::<toml::Table>().unwrap();
    config.scorers.insert("predictive".into(), toml::Value::Table(settings));
    config.campaigns.get_mut("default").unwrap().weights = [("predictive".to_string(), 1.0)].into();
    TestServer::try_start(config, Arc::new(SystemClock)).await.unwrap()
}

/// Each lead's probability (0-100) as the model computes it from the CSV row, by Prospect ID.
fn offline_scores(model: &Path) -> Vec<(String, f64)> {
    let model = ModelFile::load(model).unwrap();
    let options = ReadOptions { target: "Converted".into(), drop: vec![], delimiter: b',', positive: None };
    let table = read_csv(&leads_csv(), &options, None).unwrap();
    let ids = &table.columns[table.names.iter().position(|n| n == "Prospect ID").unwrap()];
    let rows = model.schema.encode_table(&table);
    ids.iter().zip(rows).map(|(id, row)| (id.clone().unwrap(), 100.0 * model.probability(&row))).collect()
}

async fn explain(server: &TestServer, id: &str) -> pb::LeadScore {
    let request = pb::ExplainRequest { contact_curve: false, lead_id: id.into(), campaign: String::new() };
    server.scoring().await.explain(request).await.unwrap().into_inner().score.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_model_is_served_explained_and_replaced_through_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    train_leads("gbdt", &model);
    let server = start(&dir.path().join("data"), &model).await;
    let csv = leads_csv();
    let output = Command::new(binary())
        .args(["import", "--csv", csv.to_str().unwrap(), "--server", &server.address, "--id-column", "Prospect ID"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // Served scores are the probabilities training computed, for leads imported from the CSV.
    let offline = offline_scores(&model);
    for (id, expected) in offline.iter().step_by(701) {
        let score = explain(&server, id).await;
        assert!((score.score - expected).abs() < 1e-9, "{id}: served {} != trained {expected}", score.score);
        let predictive = &score.scorers[0];
        let factors: f64 = predictive.top_factors.iter().map(|f| f.contribution).sum();
        assert!((factors - predictive.score).abs() < 1e-6, "{predictive:?}");
        assert_eq!(predictive.top_factors.iter().filter(|f| f.feature == "base rate").count(), 1);
    }

    // The ranking holds the same numbers, best first.
    let mut best: Vec<&(String, f64)> = offline.iter().collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut scoring = server.scoring().await;
    let mut ranked =
        scoring.top_leads(pb::TopLeadsRequest { limit: 5, ..Default::default() }).await.unwrap().into_inner();
    for expected in best.iter().take(5) {
        let got = ranked.message().await.unwrap().unwrap().score.unwrap();
        assert!((got.score - expected.1).abs() < 1e-9, "{got:?} vs {expected:?}");
    }

    // Missing attributes and unknown categories are scored, not refused.
    let mut odd = pb::Lead { id: "odd".into(), ..Default::default() };
    odd.attributes.insert("Country".into(), leadscore_tests::text("Atlantis"));
    odd.attributes.insert("TotalVisits".into(), leadscore_tests::text("lots"));
    let request = pb::ScoreRequest { lead: Some(odd), explain: true, ..Default::default() };
    let score = scoring.score(request).await.unwrap().into_inner().score.unwrap();
    assert!((0.0..=100.0).contains(&score.score));

    // A new model is deployed by replacing the file and reloading.
    let lr = dir.path().join("lr.json");
    train_leads("lr", &lr);
    std::fs::rename(&lr, &model).unwrap();
    server.admin().await.reload_scorers(pb::ReloadScorersRequest::default()).await.unwrap();
    let (id, expected) = &offline_scores(&model)[3];
    let served = explain(&server, id).await.score;
    assert!((served - expected).abs() < 1e-9, "after reload {served} != {expected}");
    assert!((served - offline[3].1).abs() > 1e-6, "the new model scores differently");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_model_refuses_the_plugin_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"format\": \"something-else\", \"version\": 9}").unwrap();
    for (model, reason) in [
        (dir.path().join("absent.json"), "model: "),
        (broken.clone(), "format \"something-else\" version 9, this build reads \"leadscore-model\" version 1"),
    ] {
        let server = start(&dir.path().join(format!("data-{}", reason.len())), &model).await;
        let scorers = server.admin().await.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner().scorers;
        assert_eq!(scorers.len(), 1);
        assert_eq!(scorers[0].status(), pb::ScorerStatus::Refused);
        assert!(scorers[0].status_reason.contains("scorer `predictive` refused its configuration"), "{scorers:?}");
        assert!(scorers[0].status_reason.contains(reason), "{scorers:?}");
        let request =
            pb::ScoreRequest { lead: Some(pb::Lead { id: "a".into(), ..Default::default() }), ..Default::default() };
        let status = server.scoring().await.score(request).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        server.stop().await;
    }
}

#[test]
fn a_model_worse_than_the_base_rate_is_refused_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    // In training, channel "web" mostly wins and "phone" mostly loses; the held-out rows say
    // the opposite, so anything learnt predicts worse than the share of wins alone.
    let rows = |web_wins: bool| -> String {
        let mut text = String::from("channel,won\n");
        for i in 0..200 {
            let (channel, usual) = if i % 2 == 0 { ("web", web_wins) } else { ("phone", !web_wins) };
            let won = if i % 10 < 8 { usual } else { !usual };
            text += &format!("{channel},{}\n", u8::from(won));
        }
        text
    };
    let (train_csv, test_csv) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    std::fs::write(&train_csv, rows(true)).unwrap();
    std::fs::write(&test_csv, rows(false)).unwrap();
    let out = dir.path().join("m.json");
    for model in ["lr", "gbdt"] {
        let (ok, output) = train(&[
            "--csv",
            train_csv.to_str().unwrap(),
            "--test-csv",
            test_csv.to_str().unwrap(),
            "--target",
            "won",
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!ok, "{output}");
        let refusal = format!("the {model} model's held-out log loss");
        assert!(output.contains(&refusal) && output.contains("is worse than the base rate's"), "{output}");
        assert!(!out.exists(), "no model is written");
    }
}

#[test]
fn bad_training_input_names_the_column_or_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let out = dir.path().join("m.json");
    let out = out.to_str().unwrap();
    let good = write("good.csv", "a,won\n1,0\n2,1\n3,0\n4,1\n");
    let (empty, one, ragged) =
        (write("empty.csv", "a,won\n"), write("one.csv", "a,won\n1,0\n2,0\n"), write("ragged.csv", "a,won\n1,0\n2\n"));
    let cases = [
        (vec!["--csv", &good, "--target", "lost"], "target column \"lost\" is not in the header; columns: a, won"),
        (vec!["--csv", &empty, "--target", "won"], "no rows after the header"),
        (vec!["--csv", &one, "--target", "won"], "has only one class (\"0\")"),
        (vec!["--csv", &ragged, "--target", "won"], "line 3 has 1 fields, the header has 2"),
        (vec!["--csv", &good, "--target", "won", "--drop", "b"], "--drop names column \"b\""),
        (
            vec!["--csv", &good, "--target", "won"],
            "the training rows hold 2 positive and 2 negative; at least 5 of each",
        ),
    ];
    for (args, message) in cases {
        let mut args = args;
        args.extend(["--out", out]);
        let (ok, output) = train(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(output.contains(message), "{message:?} missing from {output}");
        assert!(!Path::new(out).exists(), "nothing is written on bad input");
    }
}

/// LightGBM models trained the ways data scientists train them (`tests/lightgbm/train_shapes.py`
/// with LightGBM from PyPI, on the real lead file) are served with `booster.predict`'s own
/// probabilities; files the scorer cannot serve exactly are refused at load, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightgbm_models_of_every_shape_are_served_as_lightgbm_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = dir.path().join("shapes");
    let script = workspace_root().join("tests/lightgbm/train_shapes.py");
    let python = leadscore_tests::python_env().join("bin").join("python");
    let trained = Command::new(python).arg(script).arg(leads_csv()).arg(&shapes).output().unwrap();
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));

    for shape in ["pandas", "unbalanced", "weighted", "early_stopping", "num_iteration", "integer_codes"] {
        let server = start(&dir.path().join(format!("data-{shape}")), &shapes.join(format!("{shape}.txt"))).await;
        let mut reader = csv::Reader::from_path(shapes.join(format!("{shape}.csv"))).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let (mut requests, mut expected) = (Vec::new(), Vec::new());
        for (n, record) in reader.records().enumerate() {
            let record = record.unwrap();
            let mut attributes = std::collections::BTreeMap::new();
            for (name, cell) in header.iter().zip(record.iter()).take(header.len() - 1) {
                if cell.is_empty() {
                    continue;
                }
                let value = cell.parse::<f64>().map_or_else(|_| leadscore_tests::text(cell), leadscore_tests::number);
                attributes.insert(name.clone(), value);
            }
            let lead = pb::Lead { id: format!("lead-{n}"), attributes, ..Default::default() };
            requests.push(pb::ScoreRequest { lead: Some(lead), ..Default::default() });
            expected.push(record[header.len() - 1].parse::<f64>().unwrap());
        }
        assert_eq!(requests.len(), 500);
        let batch = pb::ScoreBatchRequest { requests };
        let scores = server.scoring().await.score_batch(batch).await.unwrap().into_inner().scores;
        let worst = scores
            .iter()
            .zip(&expected)
            .map(|(score, lightgbm)| {
                let served = score.scorers.iter().find(|s| s.scorer == "predictive").unwrap().score / 100.0;
                (served - lightgbm).abs()
            })
            .fold(0.0, f64::max);
        println!("{shape}: 500 leads, max |served - booster.predict| = {worst:e}");
        assert!(worst < 1e-9, "{shape}: served probabilities differ from LightGBM's by up to {worst}");
        server.stop().await;
    }

    for (file, why) in [
        ("refused_linear_tree", "linear trees"),
        ("refused_cut_at_a_tree", "lists 300 trees (tree_sizes) and the file holds 150"),
        ("refused_cut_before_pandas", "no pandas_categorical line"),
        ("refused_cut_in_cat_boundaries", "no \"end of trees\" line"),
    ] {
        let refused = ModelFile::load(&shapes.join(format!("{file}.txt"))).unwrap_err().to_string();
        assert!(refused.contains(why), "{file}: {refused}");
    }
}

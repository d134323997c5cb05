//! The `leadscore` command: parse the command line and configuration, set up logging, and run
//! the chosen subcommand.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use leadscore_cli::{bench_plugin, cluster, import, outcomes, report, terminal, token, train};
use leadscore_config::{Config, LogFormat, Overrides};
use leadscore_server::server;
use leadscore_store::clock::SystemClock;

/// mimalloc rather than the system allocator: building a claim or a decision allocates many
/// small strings, which glibc's malloc served at a tenth of the server's time. Plugins keep
/// their own allocator; nothing allocated on one side of the ABI is freed on the other.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "leadscore", version, about = "Real-time lead scoring and distribution engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gRPC server (defaults: 127.0.0.1:50051, data in ./leadscore-data).
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
        /// Directory for the log and snapshots.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Streams a CSV file into a running server.
    Import(import::ImportArgs),
    /// Trains the predictive model on past leads with outcomes.
    Train(train::TrainArgs),
    /// Writes the dialer's decided calls as a training CSV (target `Converted`).
    ExportOutcomes(outcomes::ExportArgs),
    /// Measures a scorer plugin library: nanoseconds per lead at several batch sizes.
    BenchPlugin(bench_plugin::BenchPluginArgs),
    /// Bearer tokens for `[[auth.tokens]]`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// A cluster's state, read from its NATS servers.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Prints a campaign's validation report from a running server: conversion by band and
    /// decile, lift, ROC AUC and calibration, live and shadow.
    Report(report::ReportArgs),
    /// Prints a campaign's best leads from a running server: rank, lead, score, band, grade and
    /// top factor.
    Top(terminal::TopArgs),
    /// Prints why a stored lead scores what it does, each part as a bar.
    Explain(terminal::ExplainArgs),
    /// Prints a running server's store, scorers and campaign queues.
    Status(terminal::StatusArgs),
    /// Scores each row of a CSV file through a running server (nothing is stored) and writes
    /// the rows with their score, band and grade.
    Score(terminal::ScoreArgs),
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Prints the nodes alive, each shard's owner, its log's tail and replicas, and its
    /// newest snapshot.
    Status(cluster::ClusterStatusArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Prints a fresh random token once, with the configuration lines that admit it (only its
    /// SHA-256 goes into the configuration).
    New {
        /// Who will hold it, as logs and the audit trail name the caller.
        #[arg(long)]
        name: String,
        /// Comma-separated: ingest, reader, scorer, dialer, privacy, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
    },
}

/// A runtime for the commands that call a server.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Runs a client command and prints what it rendered.
fn print_from(rendered: impl Future<Output = anyhow::Result<String>>) -> anyhow::Result<()> {
    print!("{}", client_runtime()?.block_on(rendered)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { listen, data_dir, config } => serve(listen, data_dir, config),
        Command::Import(args) => import(args),
        Command::BenchPlugin(args) => bench_plugin::run(&args).map(drop),
        Command::Train(args) => train::run(&args).map(drop),
        Command::Token(TokenCommand::New { name, roles }) => token::new(&name, &roles),
        Command::Cluster(ClusterCommand::Status(args)) => {
            print!("{}", cluster::status(&args)?);
            Ok(())
        }
        Command::Report(args) => print_from(report::run(&args)),
        Command::Top(args) => print_from(terminal::top(&args)),
        Command::Explain(args) => print_from(terminal::explain(&args)),
        Command::Status(args) => print_from(terminal::status(&args)),
        Command::Score(args) => {
            let scored = client_runtime()?.block_on(terminal::score_csv(&args))?;
            if let Some(out) = &args.out {
                eprintln!("scored {} rows into {}", scored.rows, out.display());
            }
            Ok(())
        }
        Command::ExportOutcomes(args) => {
            let exported = outcomes::run(&args)?;
            println!(
                "wrote {}: {} converted, {} not converted",
                args.out.display(),
                exported.converted,
                exported.not_converted
            );
            Ok(())
        }
    }
}

fn serve(listen: Option<String>, data_dir: Option<PathBuf>, file: Option<PathBuf>) -> anyhow::Result<()> {
    let text = file
        .as_ref()
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(text.as_deref(), &env, &Overrides { listen, data_dir })?;
    init_logging(&config);
    abort_on_panic();
    let runtime = match config.server.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(async {
        let address = config.listen_addr();
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
        server::run(listener, config, Arc::new(SystemClock), server::shutdown_signal()?).await
    })
}

/// A panic in the server is a bug that may have left shared state half changed. Rather than
/// serve on from it (and report SERVING while broken), the process logs where it happened and
/// aborts; the orchestrator restarts it, and the log restores every acknowledged change.
/// Scorer plugins catch their own panics at the ABI boundary, so a faulty plugin is
/// quarantined, not fatal.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(panic = %info, "the server panicked; aborting so that a restart recovers from the log");
        std::process::abort();
    }));
}

fn import(args: import::ImportArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (path, max_rejects) = (args.csv.display().to_string(), args.max_rejects);
    let errors = args.errors.clone();
    let summary = runtime.block_on(import::run(args))?;
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    for (line, id, reason) in &summary.rejections {
        println!("line {line}: {}{reason}", if id.is_empty() { String::new() } else { format!("{id}: ") });
    }
    if summary.rejected > summary.rejections.len() as u64 {
        println!("... and {} more rejections", summary.rejected - summary.rejections.len() as u64);
    }
    println!(
        "{path}: {} lines, {} rows, {} accepted, {} rejected",
        summary.lines, summary.rows, summary.accepted, summary.rejected
    );
    if let Some(errors) = errors
        && summary.rejected > 0
    {
        println!("rejected rows, with their line and reasons: {}", errors.display());
    }
    if summary.interrupted {
        println!(
            "interrupted: {} rows stored (whole batches); running the same import again is safe, it stores each row over the last",
            summary.accepted
        );
        std::process::exit(130);
    }
    if summary.rejected > max_rejects {
        eprintln!("{} rows rejected, more than --max-rejects {max_rejects}", summary.rejected);
        std::process::exit(1);
    }
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

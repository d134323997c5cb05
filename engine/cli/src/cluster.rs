//! `leadscore cluster status`: an operator's view of a cluster, read from NATS alone, so it
//! answers even while no node does. Its first question: is every shard owned and replicated?

use std::fmt::Write as _;
use std::time::Duration;

use leadscore_cluster::status::ShardStatus;
use leadscore_cluster::{ClusterStatus, Nats};

#[derive(Debug, clap::Args)]
pub struct ClusterStatusArgs {
    /// The NATS servers, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nats: Vec<String>,
}

pub fn status(args: &ClusterStatusArgs) -> anyhow::Result<String> {
    let nats = Nats::connect(&args.nats, "leadscore cluster status")?;
    let Some(status) = ClusterStatus::read(&nats, Duration::from_secs(10))? else {
        return Ok("no node has joined this cluster yet\n".into());
    };
    Ok(render(&status, now_ms()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn render(status: &ClusterStatus, now_ms: i64) -> String {
    let shards = &status.shards;
    let unowned: Vec<String> = shards.iter().filter(|s| s.owner.is_none()).map(|s| s.shard.to_string()).collect();
    let lagging: Vec<String> = shards.iter().filter(|s| !s.lagging.is_empty()).map(|s| s.shard.to_string()).collect();
    let mut out = String::new();
    let verdict = if unowned.is_empty() && lagging.is_empty() { "healthy" } else { "degraded" };
    let _ = writeln!(out, "cluster {verdict}: {} nodes alive, {} shards", status.nodes.len(), shards.len());
    if !unowned.is_empty() {
        let _ = writeln!(out, "  not owned (no node serves them): shards {}", unowned.join(", "));
    }
    if !lagging.is_empty() {
        let _ = writeln!(out, "  replicas behind or offline: shards {}", lagging.join(", "));
    }
    let _ = writeln!(out, "\n{:<24} {:>6}", "node", "shards");
    for node in &status.nodes {
        let held = shards.iter().filter(|s| s.owner.as_deref() == Some(node.as_str())).count();
        let _ = writeln!(out, "{node:<24} {held:>6}");
    }
    let _ = writeln!(
        out,
        "\n{:>5}  {:<20} {:>10} {:>10}  {:<12} {:<22} snapshot",
        "shard", "owner", "log tail", "log size", "leader", "replicas"
    );
    for shard in shards {
        let _ = writeln!(out, "{}", row(shard, now_ms));
    }
    out
}

fn row(shard: &ShardStatus, now_ms: i64) -> String {
    let replicas = match shard.lagging.as_slice() {
        [] => "all current".to_owned(),
        behind => behind.iter().map(|(name, lag)| format!("{name} {lag} behind")).collect::<Vec<_>>().join(", "),
    };
    let snapshot = match shard.snapshot {
        None => "none".to_owned(),
        Some(kept) => match kept.created_at_ms {
            Some(at) => format!("at {}, {} ago", kept.position, age((now_ms - at).max(0))),
            None => format!("at {}", kept.position),
        },
    };
    format!(
        "{:>5}  {:<20} {:>10} {:>10}  {:<12} {:<22} {snapshot}",
        shard.shard,
        shard.owner.as_deref().unwrap_or("-"),
        shard.tail.map_or("no stream".into(), |t| t.to_string()),
        bytes(shard.bytes),
        shard.leader.as_deref().unwrap_or("-"),
        replicas,
    )
}

fn age(ms: i64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 1 << 10 => format!("{n} B"),
        n if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
    }
}

#[cfg(test)]
mod tests {
    use leadscore_cluster::snapshots::Kept;

    use super::*;

    fn shard(shard: u32, owner: Option<&str>, lagging: Vec<(String, u64)>) -> ShardStatus {
        ShardStatus {
            shard,
            owner: owner.map(Into::into),
            tail: Some(120),
            bytes: 5 << 20,
            leader: Some("nats-2".into()),
            lagging,
            snapshot: Some(Kept { shard, position: 100, created_at_ms: Some(1_000) }),
        }
    }

    #[test]
    fn the_first_line_says_whether_every_shard_is_owned_and_replicated() {
        let nodes = vec!["node-a".to_owned(), "node-b".to_owned()];
        let healthy = ClusterStatus {
            nodes: nodes.clone(),
            shards: vec![shard(0, Some("node-a"), vec![]), shard(1, Some("node-b"), vec![])],
        };
        let text = render(&healthy, 181_000);
        assert!(text.starts_with("cluster healthy: 2 nodes alive, 2 shards\n"), "{text}");
        assert!(text.contains("node-a                        1"), "{text}");
        assert!(text.contains("at 100, 3 min ago"), "{text}");
        assert!(text.contains("5.0 MiB"), "{text}");

        let degraded = ClusterStatus {
            nodes,
            shards: vec![shard(0, None, vec![]), shard(1, Some("node-b"), vec![("nats-3".into(), 42)])],
        };
        let text = render(&degraded, 181_000);
        assert!(text.starts_with("cluster degraded"), "{text}");
        assert!(text.contains("not owned (no node serves them): shards 0"), "{text}");
        assert!(text.contains("replicas behind or offline: shards 1"), "{text}");
        assert!(text.contains("nats-3 42 behind"), "{text}");
    }
}

//! `leadscore report`: a campaign's validation report (`AdminService.ValidationReport`) from a
//! running server, printed as tables.

use std::fmt::Write;

use leadscore_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;

use crate::remote::{Remote, band_name};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The campaign; the default campaign if omitted.
    #[arg(long, default_value = "")]
    pub campaign: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// Fetches the report and renders it.
pub async fn run(args: &ReportArgs) -> anyhow::Result<String> {
    let (channel, bearer) = args.remote.connect().await?;
    let mut client = AdminServiceClient::with_interceptor(channel, bearer);
    let request = pb::ValidationReportRequest { campaign: args.campaign.clone() };
    let report =
        client.validation_report(request).await.map_err(|status| anyhow::anyhow!(status.message().to_string()))?;
    Ok(render(&report.into_inner()))
}

/// The report as text tables, one block per configuration version and scoring.
pub fn render(report: &pb::ValidationReportResponse) -> String {
    let mut out = String::new();
    if report.sections.is_empty() {
        let _ = writeln!(out, "campaign {}: no called lead has an outcome yet", report.campaign);
        return out;
    }
    for section in &report.sections {
        let all = section.all.unwrap_or_default();
        let scoring = if section.shadow { "shadow" } else { "live" };
        let optional = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "campaign {}, configuration {} ({scoring}): {} leads, {} converted ({:.1}%), ROC AUC {}, top-decile lift {}",
            report.campaign,
            section.config_version,
            all.leads,
            all.conversions,
            100.0 * all.conversion_rate,
            optional(section.roc_auc),
            optional(section.top_decile_lift),
        );
        let _ = writeln!(out, "\n  {:<12} {:>8} {:>11} {:>9} {:>17}", "band", "leads", "converted", "rate", "scores");
        for band in &section.bands {
            row(&mut out, &band_name(band.band), &band.bucket.unwrap_or_default());
        }
        let _ = writeln!(out, "\n  {:<12} {:>8} {:>11} {:>9} {:>17}", "decile", "leads", "converted", "rate", "scores");
        for (i, decile) in section.deciles.iter().enumerate() {
            row(&mut out, &format!("{}", i + 1), decile);
        }
        if !section.calibration.is_empty() {
            let _ = writeln!(out, "\n  {:<12} {:>8} {:>11} {:>9}", "calibration", "leads", "predicted", "observed");
            for (i, c) in section.calibration.iter().enumerate() {
                let (predicted, observed) = (100.0 * c.mean_probability, 100.0 * c.conversion_rate);
                let _ = writeln!(out, "  {:<12} {:>8} {predicted:>10.1}% {observed:>8.1}%", i + 1, c.leads);
            }
        }
        out.push('\n');
    }
    out
}

fn row(out: &mut String, label: &str, bucket: &pb::ScoreBucket) {
    let scores =
        if bucket.leads == 0 { String::new() } else { format!("{:.1}-{:.1}", bucket.min_score, bucket.max_score) };
    let rate = 100.0 * bucket.conversion_rate;
    let _ = writeln!(out, "  {label:<12} {:>8} {:>11} {rate:>8.1}% {scores:>17}", bucket.leads, bucket.conversions);
}

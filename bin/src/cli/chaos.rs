//! `shoal chaos --nodes 3|5 --duration S [--seed N] [--json] [--history FILE] [--keep]`: a
//! fault-injection run against a fresh local cluster with a linearizability verdict (SPEC §7;
//! the run itself is [`crate::chaos`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::output::Output;
use super::{CliError, GlobalArgs};
use crate::chaos::{self, ChaosOptions, ChaosReport};

/// Arguments of `shoal chaos`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit status: 0 when the verdict is pass, 1 when it is fail (the \
    violations and the seed are printed) or the run could not be set up, 2 on invalid usage.\n\
    Replay a run's fault schedule with --seed N."
)]
pub struct ChaosArgs {
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    pub nodes: u64,
    /// Seconds of load and faults (the first cycle of every fault kind always completes).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub duration: u64,
    /// Seed of the fault schedule and the clients' choices (random when not given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Writes every operation as one JSON object a line (Jepsen-shaped) to FILE.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Keeps the cluster directory (node logs, WALs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Register clients (read, write, compare-and-set).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub clients: u64,
    /// Checkout clients.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=50))]
    pub checkout_clients: u64,
}

/// Runs `shoal chaos` and returns the exit code (0 pass, 1 fail).
pub fn run(global: &GlobalArgs, args: &ChaosArgs) -> ExitCode {
    let json = global.json;
    match run_inner(global, args) {
        Ok(code) => code,
        Err(error) => error.report(json),
    }
}

fn run_inner(global: &GlobalArgs, args: &ChaosArgs) -> Result<ExitCode, CliError> {
    if args.nodes != 3 && args.nodes != 5 {
        return Err(CliError::usage(format!(
            "--nodes must be 3 or 5, got {}",
            args.nodes
        )));
    }
    if let Some(path) = &args.history {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            return Err(CliError::invalid(format!(
                "--history {}: directory {} does not exist",
                path.display(),
                parent.display()
            )));
        }
    }
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let options = ChaosOptions {
        nodes: args.nodes,
        duration: Duration::from_secs(args.duration),
        seed,
        keep: args.keep,
        quiet: global.json,
        register_clients: args.clients,
        checkout_clients: args.checkout_clients,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::io(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = chaos::run(&options) => result,
            _ = tokio::signal::ctrl_c() => Err(format!("interrupted (seed {seed})")),
        }
    });
    // Dropping the runtime cancels the client tasks; the cluster (and its children) went
    // with the run's future.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let report = outcome.map_err(|e| CliError::io(format!("chaos run (seed {seed}): {e}")))?;
    if let Some(path) = &args.history {
        std::fs::write(path, &report.jsonl)
            .map_err(|e| CliError::io(format!("cannot write {}: {e}", path.display())))?;
    }
    print(global, args, &report)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(global: &GlobalArgs, args: &ChaosArgs, report: &ChaosReport) -> Result<(), CliError> {
    let mut out = Output::new();
    if global.json {
        out.line(format_args!("{}", report.to_json()));
        return out.finish();
    }
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    out.line(format_args!(
        "chaos: {} nodes, {} s (took {:.0} s), seed {}",
        report.nodes, report.duration_s, report.elapsed_s, report.seed
    ));
    out.line(format_args!(
        "operations: {} ({} register, {} indeterminate; {} checkouts: {} acknowledged, {} refused, {} unknown)",
        report.ops,
        report.register_ops,
        report.indeterminate,
        report.shop.acknowledged + report.shop.refused + report.shop.unknown,
        report.shop.acknowledged,
        report.shop.refused,
        report.shop.unknown
    ));
    out.line(format_args!(
        "checked: {} operations on {} keys (final reads included): {}",
        report.ops_checked,
        report.keys,
        report.verdict_text.lines().next().unwrap_or_default()
    ));
    out.line(format_args!(
        "stock: initial {} = remaining {} + sold {}",
        report.shop.initial, report.shop.remaining, report.shop.sold
    ));
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    out.line(format_args!("faults: {}", faults.join(", ")));
    if let Some(dir) = &report.kept {
        out.line(format_args!("cluster directory kept: {}", dir.display()));
    }
    if let Some(path) = &args.history {
        out.line(format_args!("history written to {}", path.display()));
    }
    if !report.passed() {
        out.line(format_args!("violations:"));
        for violation in &report.violations {
            out.line(format_args!("  - {violation}"));
        }
        if report.verdict_text.contains('\n') {
            out.line(format_args!("{}", report.verdict_text));
        }
        out.line(format_args!(
            "replay the fault schedule with --seed {}",
            report.seed
        ));
    }
    out.line(format_args!("verdict: {verdict}"));
    out.finish()
}

//! The deterministic simulation of the Raft core (see `sim/mod.rs`).
//!
//! `SHOAL_SEED=n` replays one seed; `SHOAL_SIM_SEEDS=k` runs `k` seeds per cluster size.
#![cfg(not(any(
    feature = "buggy-commit-previous-term",
    feature = "buggy-vote-before-persist"
)))]

mod sim;

fn run_many(run: usize) {
    let (nodes, base, default_seeds) = sim::DEFAULT_RUNS[run];
    let mut total = sim::Stats::default();
    let seeds = sim::seeds(base, default_seeds);
    for &seed in &seeds {
        match sim::run(seed, nodes, sim::SAFETY_TICKS) {
            Ok(stats) => {
                total.ops_ok += stats.ops_ok;
                total.ops_info += stats.ops_info;
                total.crashes += stats.crashes;
                total.elections += stats.elections;
                total.snapshots_installed += stats.snapshots_installed;
                total.membership_changes += stats.membership_changes;
                total.transfers += stats.transfers;
            }
            Err(e) => panic!("simulation failed ({nodes} nodes): {e}\nreplay: SHOAL_SEED={seed}"),
        }
    }
    eprintln!("{nodes} nodes, {} seeds: {total:?}", seeds.len());
}

#[test]
fn three_nodes() {
    run_many(0);
}

#[test]
fn five_nodes() {
    run_many(1);
}

#[test]
fn seven_nodes() {
    run_many(2);
}

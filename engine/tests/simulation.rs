//! The deterministic simulation of the Raft core (see `sim/mod.rs`): 3-, 5- and 7-node
//! clusters, each seed a safety phase with faults, then a liveness phase, then a
//! linearizability check of the clients' history.
//!
//! ```text
//! cargo test -p shoal-engine --test simulation                       # default seeds
//! SHOAL_SIM_SEEDS=5000 cargo test -p shoal-engine --test simulation  # 5000 per size
//! SHOAL_SEED=1000037 cargo test -p shoal-engine --test simulation five_nodes  # replay one
//! SHOAL_SEED=17 SHOAL_SIM_TRACE=1 cargo test -p shoal-engine --test simulation three_nodes
//! ```
//! A failure names its seed and the property it broke.
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
                total.ticks += stats.ticks;
                total.max_term = total.max_term.max(stats.max_term);
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

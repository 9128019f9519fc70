//! Proof that the simulation catches real Raft bugs: each deliberate bug, switched on by a
//! test-only feature, must make at least one of the default seeds fail.
//!
//! ```text
//! cargo test -p shoal-engine --features buggy-commit-previous-term --test sim_catches_bugs
//! cargo test -p shoal-engine --features buggy-vote-before-persist --test sim_catches_bugs
//! ```
#![cfg(any(
    feature = "buggy-commit-previous-term",
    feature = "buggy-vote-before-persist"
))]

mod sim;

/// Runs the default seeds of every cluster size until one breaks a safety property (a liveness
/// failure does not count: the bugs are safety bugs); returns its error.
fn first_failure() -> Option<String> {
    for (nodes, base, count) in sim::DEFAULT_RUNS {
        for seed in sim::seeds(base, count) {
            if let Err(e) = sim::run(seed, nodes, sim::SAFETY_TICKS)
                && !e.contains("liveness:")
            {
                return Some(format!("{nodes} nodes: {e} (replay: SHOAL_SEED={seed})"));
            }
        }
    }
    None
}

#[test]
fn the_simulation_catches_the_deliberate_bug() {
    match first_failure() {
        Some(failure) => eprintln!("caught: {failure}"),
        None => panic!("no seed caught the deliberate bug"),
    }
}

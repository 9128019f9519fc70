//! Commit throughput of the Raft core alone: a 3-node cluster driven entirely in memory (no
//! disk, no network, writes acknowledged as soon as a `Ready` hands them out), with 1, 64 and
//! 256 concurrent proposers. Each proposer keeps one entry in flight and proposes the next as
//! soon as the leader hands its entry out as committed.
//!
//! `cargo bench -p shoal-benches --bench core`

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal_engine::core::{Bytes, Config, EntryKind, Message, RawNode, Recovered, Role};

struct Cluster {
    nodes: Vec<RawNode>,
    queue: VecDeque<Message>,
    leader: usize,
}

impl Cluster {
    fn new() -> Self {
        let nodes: Vec<RawNode> = (1..=3u64)
            .map(|id| {
                let mut cfg = Config::new(id);
                cfg.heartbeat_ticks = 1;
                cfg.election_ticks_min = 10;
                cfg.election_ticks_max = 20;
                cfg.lease_ticks = 5;
                cfg.clock_drift_ticks = 1;
                cfg.max_inflight_msgs = 1024;
                cfg.max_entries_per_msg = 4096;
                cfg.max_uncommitted_entries = 1 << 22;
                RawNode::new(cfg, Recovered::bootstrap([1, 2, 3])).expect("valid node")
            })
            .collect();
        let mut cluster = Self {
            nodes,
            queue: VecDeque::new(),
            leader: 0,
        };
        // Elect node 1.
        for _ in 0..40 {
            cluster.nodes[0].tick();
            cluster.pump(&mut 0);
            if cluster.nodes[0].role() == Role::Leader {
                break;
            }
        }
        assert_eq!(
            cluster.nodes[0].role(),
            Role::Leader,
            "node 1 was not elected"
        );
        cluster.leader = 0;
        cluster
    }

    /// Carries out every `Ready` and delivers every message until the cluster is quiet;
    /// counts the normal entries the leader hands out as committed.
    fn pump(&mut self, committed: &mut u64) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].has_ready() {
                    continue;
                }
                progressed = true;
                let ready = self.nodes[i].ready();
                // "Persist": nothing to write in memory; the writes are durable at once.
                black_box(&ready.entries);
                self.queue.extend(ready.messages);
                self.nodes[i].on_persisted(ready.number);
                self.queue.extend(ready.persisted_messages);
                if i == self.leader {
                    *committed += ready
                        .committed_entries
                        .iter()
                        .filter(|e| e.kind == EntryKind::Normal)
                        .count() as u64;
                }
            }
            while let Some(m) = self.queue.pop_front() {
                progressed = true;
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m);
            }
            if !progressed {
                return;
            }
        }
    }

    /// Runs until `total` entries are committed with `proposers` in flight at a time.
    fn run(&mut self, proposers: u64, total: u64, payload: &Bytes) -> Duration {
        let start = Instant::now();
        let mut free = proposers;
        let mut committed = 0;
        let mut proposed = 0;
        while committed < total {
            let batch = free.min(total - proposed);
            if batch > 0 {
                self.nodes[self.leader]
                    .propose_batch((0..batch).map(|_| payload.clone()))
                    .expect("leader accepts proposals");
                proposed += batch;
                free -= batch;
            }
            let before = committed;
            self.pump(&mut committed);
            free += committed - before;
        }
        start.elapsed()
    }
}

fn bench_commit(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; 64]);
    let mut group = c.benchmark_group("core_commit_3_nodes");
    group.measurement_time(Duration::from_secs(5));
    for proposers in [1u64, 64, 256] {
        let per_iter = if proposers == 1 { 5_000 } else { 100_000 };
        group.throughput(Throughput::Elements(per_iter));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{proposers}_proposers")),
            &proposers,
            |b, &proposers| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let mut cluster = Cluster::new();
                        elapsed += cluster.run(proposers, per_iter, &payload);
                    }
                    elapsed
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_commit);
criterion_main!(benches);

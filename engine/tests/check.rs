//! Properties and performance of the linearizability checker on generated histories.
//!
//! Histories are generated from a real sequential execution: concurrent clients issue
//! operations with random latencies, each operation takes effect at a random point inside
//! its interval (indeterminate ones maybe not at all), and results are those of the register
//! executed in that order. Such histories are linearizable by construction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// One module named for the filter: `cargo test -p shoal-engine check` runs these too.
mod check {

    use std::collections::BTreeMap;
    use std::time::Instant;

    use proptest::prelude::*;
    use shoal_engine::check::{
        Call, CheckConfig, History, KeyVerdict, Op, Outcome, Value, Verdict, check,
        check_final_reads,
    };

    /// SplitMix64: a tiny seeded generator, so that each case is reproducible from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    #[derive(Clone, Copy, Debug)]
    struct Workload {
        clients: u64,
        ops: usize,
        /// Operations on one key before the clients move to the next (Jepsen's independent keys).
        ops_per_key: usize,
        read_percent: u64,
        cas_percent: u64,
        info_percent: u64,
        fail_percent: u64,
        max_latency: u64,
        /// Operations that take 20 times longer (a paused leader, say).
        stall_percent: u64,
    }

    const CHAOS_LIKE: Workload = Workload {
        clients: 10,
        ops: 2_000,
        ops_per_key: 100,
        read_percent: 45,
        cas_percent: 25,
        info_percent: 5,
        fail_percent: 3,
        max_latency: 40,
        stall_percent: 2,
    };

    /// A history of `workload` and the final value of every key.
    fn generate(seed: u64, workload: Workload) -> (History, BTreeMap<Vec<u8>, Option<Value>>) {
        struct Planned {
            op: Op,
            effect_at: u64,
            applied: bool,
        }
        let mut rng = Rng(seed);
        let mut free_at: Vec<u64> = (0..workload.clients).map(|_| rng.below(10)).collect();
        let mut written_per_key: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        let mut planned: Vec<Planned> = Vec::with_capacity(workload.ops);
        for index in 0..workload.ops {
            // The client that is free first issues the next operation.
            let client = (0..workload.clients as usize)
                .min_by_key(|&c| (free_at[c], c))
                .unwrap();
            let key = format!("key{}", index / workload.ops_per_key.max(1)).into_bytes();
            let invoke = free_at[client];
            let mut latency = 1 + rng.below(workload.max_latency);
            if rng.percent(workload.stall_percent) {
                latency *= 20;
            }
            let complete = invoke + latency;
            let effect_at = invoke + rng.below(latency + 1);
            free_at[client] = complete + 1 + rng.below(3);
            let written = written_per_key.entry(key.clone()).or_default();
            let roll = rng.below(100);
            let call = if roll < workload.read_percent {
                Call::Read
            } else if roll < workload.read_percent + workload.cas_percent {
                let expected = match written.len() {
                    0 => None,
                    n if rng.percent(80) => {
                        Some(written[n - 1 - rng.below(n.min(3) as u64) as usize].clone())
                    }
                    _ => None,
                };
                let new = format!("c{client}-{index}").into_bytes();
                written.push(new.clone());
                Call::Cas { expected, new }
            } else {
                let value = format!("w{client}-{index}").into_bytes();
                written.push(value.clone());
                Call::Write(value)
            };
            let (outcome, applied) = if rng.percent(workload.fail_percent) {
                (Outcome::Fail, false)
            } else if rng.percent(workload.info_percent) {
                (Outcome::Info, rng.percent(50))
            } else {
                (Outcome::Pending, true)
            };
            planned.push(Planned {
                op: Op {
                    process: client as u64,
                    key,
                    call,
                    invoke,
                    complete: Some(complete),
                    outcome,
                },
                effect_at,
                applied,
            });
        }
        // Execute the applied operations in the order they took effect.
        let mut order: Vec<usize> = (0..planned.len()).filter(|&i| planned[i].applied).collect();
        order.sort_by_key(|&i| (planned[i].effect_at, i));
        let mut registers: BTreeMap<Vec<u8>, Option<Value>> = BTreeMap::new();
        for i in order {
            let op = &mut planned[i].op;
            let register = registers.entry(op.key.clone()).or_default();
            let result = match &op.call {
                Call::Read => Outcome::ReadOk(register.clone()),
                Call::Write(value) => {
                    *register = Some(value.clone());
                    Outcome::WriteOk
                }
                Call::Cas { expected, new } => {
                    let swapped = register == expected;
                    if swapped {
                        *register = Some(new.clone());
                    }
                    Outcome::CasOk(swapped)
                }
            };
            if op.outcome == Outcome::Pending {
                op.outcome = result;
            }
        }
        for plan in &mut planned {
            // Reads of a key never written and not applied (they were all applied) stay sane.
            if plan.op.outcome == Outcome::Pending {
                plan.op.outcome = Outcome::Info;
            }
        }
        let history: History = planned.into_iter().map(|plan| plan.op).collect();
        history.validate().unwrap();
        (history, registers)
    }

    fn small_workload() -> impl Strategy<Value = (u64, Workload)> {
        (
            any::<u64>(),
            1u64..8,
            1usize..80,
            5usize..40,
            0u64..40,
            0u64..30,
            0u64..20,
            0u64..10,
            1u64..30,
        )
            .prop_map(
                |(
                    seed,
                    clients,
                    ops,
                    ops_per_key,
                    read_percent,
                    cas_percent,
                    info_percent,
                    fail_percent,
                    max_latency,
                )| {
                    (
                        seed,
                        Workload {
                            clients,
                            ops,
                            ops_per_key,
                            read_percent: read_percent + 20,
                            cas_percent,
                            info_percent,
                            fail_percent,
                            max_latency,
                            stall_percent: 5,
                        },
                    )
                },
            )
    }

    fn is_violation(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::NotLinearizable { .. })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn generated_histories_are_linearizable((seed, workload) in small_workload()) {
            let (history, finals) = generate(seed, workload);
            let report = check_final_reads(&history, &finals, &CheckConfig::default()).unwrap();
            prop_assert_eq!(&report.verdict, &Verdict::Linearizable, "{}", history.to_jsonl());
        }

        #[test]
        fn a_read_of_a_never_written_value_is_caught((seed, workload) in small_workload(), pick in any::<usize>()) {
            let (history, _) = generate(seed, workload);
            let reads: Vec<usize> = (0..history.len())
                .filter(|&i| matches!(history.ops()[i].outcome, Outcome::ReadOk(_)))
                .collect();
            prop_assume!(!reads.is_empty());
            let target = reads[pick % reads.len()];
            let mut ops = history.ops().to_vec();
            ops[target].outcome = Outcome::ReadOk(Some(b"never written".to_vec()));
            let report = check(&ops.iter().cloned().collect(), &CheckConfig::default()).unwrap();
            let Verdict::NotLinearizable { key, ops: witness } = &report.verdict else {
                panic!("not caught: {:?}", report.verdict);
            };
            prop_assert_eq!(key, &ops[target].key);
            prop_assert_eq!(witness, &vec![ops[target].clone()]);
        }

        #[test]
        fn a_read_of_an_overwritten_value_is_caught((seed, workload) in small_workload(), pick in any::<usize>()) {
            // Make a read return the value of a write that an acknowledged write followed, both
            // before the read began (values are unique, so nothing else explains it).
            let (history, _) = generate(seed, workload);
            let ops = history.ops();
            let acked_writes: Vec<&Op> = ops.iter().filter(|op| op.outcome == Outcome::WriteOk).collect();
            let mut candidates = Vec::new();
            for (index, read) in ops.iter().enumerate() {
                if !matches!(read.outcome, Outcome::ReadOk(_)) {
                    continue;
                }
                let before = |op: &&&Op| op.key == read.key && op.complete.unwrap() < read.invoke;
                for old in acked_writes.iter().filter(before) {
                    if acked_writes.iter().filter(before).any(|newer| old.complete.unwrap() < newer.invoke) {
                        let Call::Write(value) = &old.call else { unreachable!() };
                        candidates.push((index, value.clone()));
                    }
                }
            }
            prop_assume!(!candidates.is_empty());
            let (target, stale) = candidates[pick % candidates.len()].clone();
            let mut mutated = ops.to_vec();
            mutated[target].outcome = Outcome::ReadOk(Some(stale));
            let report = check(&mutated.into_iter().collect(), &CheckConfig::default()).unwrap();
            prop_assert!(is_violation(&report.verdict), "{:?}", report.verdict);
        }

        #[test]
        fn jsonl_round_trip_keeps_the_history((seed, workload) in small_workload()) {
            let (history, _) = generate(seed, workload);
            let text = history.to_jsonl();
            let parsed = History::from_jsonl(&text).unwrap();
            let sorted = |h: &History| {
                let mut ops = h.ops().to_vec();
                ops.sort_by_key(|op| (op.invoke, op.process));
                ops
            };
            prop_assert_eq!(sorted(&parsed), sorted(&history));
            prop_assert_eq!(parsed.to_jsonl(), text);
        }
    }

    /// The reference: an exhaustive search over orders, with none of the checker's refutations,
    /// pruning or heuristics. Indeterminate operations may be placed anywhere after their
    /// invocation or left out; failed operations and indeterminate reads are ignored.
    fn reference_linearizable(ops: &[Op]) -> bool {
        fn model(op: &Op, state: &Option<Value>) -> Option<Option<Value>> {
            let indeterminate = op.outcome.is_indeterminate();
            match (&op.call, &op.outcome) {
                (Call::Read, Outcome::ReadOk(value)) => (value == state).then(|| state.clone()),
                (Call::Write(value), _) => Some(Some(value.clone())),
                (Call::Cas { expected, new }, Outcome::CasOk(true)) => {
                    (expected == state).then(|| Some(new.clone()))
                }
                (Call::Cas { expected, .. }, Outcome::CasOk(false)) => {
                    (expected != state).then(|| state.clone())
                }
                (Call::Cas { expected, new }, _) if indeterminate => Some(if expected == state {
                    Some(new.clone())
                } else {
                    state.clone()
                }),
                _ => None,
            }
        }
        fn search(ops: &[&Op], done: &mut Vec<bool>, state: &Option<Value>) -> bool {
            let pending_determinate = |done: &[bool], i: usize| !done[i] && ops[i].outcome.is_ok();
            if !(0..ops.len()).any(|i| pending_determinate(done, i)) {
                return true;
            }
            for i in 0..ops.len() {
                if done[i] {
                    continue;
                }
                // Nothing not yet placed may have completed before this one was invoked.
                let blocked = (0..ops.len()).any(|j| {
                    j != i
                        && pending_determinate(done, j)
                        && ops[j].complete.unwrap() < ops[i].invoke
                });
                if blocked {
                    continue;
                }
                if let Some(next) = model(ops[i], state) {
                    done[i] = true;
                    let found = search(ops, done, &next);
                    done[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        let relevant: Vec<&Op> = ops
            .iter()
            .filter(|op| {
                op.outcome != Outcome::Fail
                    && !(op.call == Call::Read && op.outcome.is_indeterminate())
            })
            .collect();
        search(&relevant, &mut vec![false; relevant.len()], &None)
    }

    fn arbitrary_op() -> impl Strategy<Value = Op> {
        let value = prop_oneof![Just(None), (0u8..3).prop_map(|v| Some(vec![b'a' + v]))];
        (
            0u8..3,
            value.clone(),
            (0u8..3).prop_map(|v| vec![b'a' + v]),
            0u64..12,
            0u64..8,
            0u8..10,
        )
            .prop_map(|(which, value, new, invoke, length, fate)| {
                let (call, outcome) = match which {
                    0 => (Call::Read, Outcome::ReadOk(value)),
                    1 => (Call::Write(new), Outcome::WriteOk),
                    _ => (
                        Call::Cas {
                            expected: value,
                            new,
                        },
                        Outcome::CasOk(fate.is_multiple_of(2)),
                    ),
                };
                let outcome = match fate {
                    0 => Outcome::Fail,
                    1 | 2 => Outcome::Info,
                    3 => Outcome::Pending,
                    _ => outcome,
                };
                let complete = (outcome != Outcome::Pending).then_some(invoke + length);
                Op {
                    process: 0,
                    key: b"k".to_vec(),
                    call,
                    invoke,
                    complete,
                    outcome,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The checker against the exhaustive reference on small arbitrary histories (repeated
        /// values, mismatches, indeterminate and failed operations): every refutation, pruning
        /// and ordering rule of the search must agree with it.
        #[test]
        fn checker_agrees_with_exhaustive_reference(ops in proptest::collection::vec(arbitrary_op(), 0..8)) {
            let history: History = ops.iter().cloned().collect();
            let report = check(&history, &CheckConfig::default()).unwrap();
            let expected = reference_linearizable(&ops);
            prop_assert_eq!(report.is_linearizable(), expected, "{:?}\n{}", report.verdict, history.to_jsonl());
            if let Verdict::NotLinearizable { ops: witness, .. } = &report.verdict {
                prop_assert!(!reference_linearizable(witness), "witness is linearizable: {:?}", witness);
            }
        }
    }

    /// A small history of one key where every write has its own value (as in `shoal chaos`),
    /// so that the search's single-writer rules come into play; observed values are mostly
    /// ones written (sometimes only later), sometimes absent.
    fn unique_value_history(seed: u64) -> Vec<Op> {
        let mut rng = Rng(seed);
        let count = 1 + rng.below(10) as usize;
        let span = 1 + rng.below(30);
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut ops = Vec::with_capacity(count);
        for index in 0..count {
            let which = rng.below(3);
            let invoke = rng.below(span);
            let length = rng.below(12);
            let fate = rng.below(12);
            let new = format!("v{index}").into_bytes();
            let pick = rng.below(written.len() as u64 + 2) as usize;
            let observed = match pick {
                p if p < written.len() => Some(written[p].clone()),
                p if p == written.len() => {
                    Some(format!("v{}", rng.below(count as u64)).into_bytes())
                }
                _ => None,
            };
            let (call, outcome) = match which {
                0 => (Call::Read, Outcome::ReadOk(observed)),
                1 => {
                    written.push(new.clone());
                    (Call::Write(new), Outcome::WriteOk)
                }
                _ => {
                    written.push(new.clone());
                    (
                        Call::Cas {
                            expected: observed,
                            new,
                        },
                        Outcome::CasOk(fate.is_multiple_of(2)),
                    )
                }
            };
            let outcome = match fate {
                0 => Outcome::Fail,
                1 | 2 => Outcome::Info,
                3 => Outcome::Pending,
                _ => outcome,
            };
            let complete = (outcome != Outcome::Pending).then_some(invoke + length);
            ops.push(Op {
                process: index as u64,
                key: b"k".to_vec(),
                call,
                invoke,
                complete,
                outcome,
            });
        }
        ops
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        /// Like `checker_agrees_with_exhaustive_reference`, with unique written values.
        #[test]
        fn checker_agrees_with_exhaustive_reference_on_unique_values(seed in any::<u64>()) {
            let ops = unique_value_history(seed);
            let history: History = ops.iter().cloned().collect();
            let report = check(&history, &CheckConfig::default()).unwrap();
            let expected = reference_linearizable(&ops);
            prop_assert_eq!(report.is_linearizable(), expected, "{:?}\n{}", report.verdict, history.to_jsonl());
            if let Verdict::NotLinearizable { ops: witness, .. } = &report.verdict {
                prop_assert!(!reference_linearizable(witness), "witness is linearizable: {:?}", witness);
            }
        }
    }

    fn timed_check(
        name: &str,
        history: &History,
        finals: &BTreeMap<Vec<u8>, Option<Value>>,
    ) -> shoal_engine::check::Report {
        let started = Instant::now();
        let report = check_final_reads(history, finals, &CheckConfig::default()).unwrap();
        let max_steps = report.keys.iter().map(|k| k.steps).max().unwrap_or(0);
        eprintln!(
            "{name}: {} ops, {} keys, {} steps (max {max_steps} per key) in {:?}: {}",
            report.ops,
            report.keys.len(),
            report.steps,
            started.elapsed(),
            report.verdict.to_string().lines().next().unwrap_or("")
        );
        report
    }

    #[test]
    fn performance_chaos_like_run() {
        let workload = Workload {
            clients: 20,
            ops: 4_000,
            info_percent: 10,
            stall_percent: 5,
            ..CHAOS_LIKE
        };
        for seed in 0..3 {
            let (history, finals) = generate(seed, workload);
            let report = timed_check("chaos-like", &history, &finals);
            assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
        }
    }

    #[test]
    fn performance_stale_read_in_a_long_run() {
        let (history, finals) = generate(7, CHAOS_LIKE);
        let mut ops = history.ops().to_vec();
        // A follower serving an old value: the last read of some key returns the key's first
        // acknowledged write.
        let key = b"key12".to_vec();
        let first = ops
            .iter()
            .find(|op| op.key == key && op.outcome == Outcome::WriteOk)
            .cloned()
            .unwrap();
        let Call::Write(stale) = first.call else {
            unreachable!()
        };
        let last_read = ops
            .iter()
            .rposition(|op| op.key == key && matches!(op.outcome, Outcome::ReadOk(_)))
            .unwrap();
        ops[last_read].outcome = Outcome::ReadOk(Some(stale));
        let history: History = ops.into_iter().collect();
        let report = timed_check("stale read", &history, &finals);
        let Verdict::NotLinearizable {
            key: bad,
            ops: witness,
        } = &report.verdict
        else {
            panic!("{:?}", report.verdict);
        };
        assert_eq!(bad, &key);
        assert!(witness.len() <= 6, "{}", report.verdict);
        assert_eq!(
            report
                .keys
                .iter()
                .filter(|k| k.verdict != KeyVerdict::Linearizable)
                .count(),
            1
        );
    }

    #[test]
    fn lost_write_found_by_final_reads_in_a_long_run() {
        let (history, mut finals) = generate(11, CHAOS_LIKE);
        // Roll one key back to absent, as a cluster that lost its log would.
        let key = b"key3".to_vec();
        finals.insert(key.clone(), None);
        let report = timed_check("lost write", &history, &finals);
        let Verdict::NotLinearizable { key: bad, ops } = &report.verdict else {
            panic!("{:?}", report.verdict);
        };
        assert_eq!(bad, &key);
        assert!(ops.len() <= 3, "{}", report.verdict);
    }

    #[test]
    fn performance_search_refutes_disagreeing_readers() {
        // No linear-time refutation sees this: concurrent writes, and two readers that see two
        // of them in opposite orders while the writes are in flight. The search must.
        let (history, finals) = generate(3, CHAOS_LIKE);
        let mut ops = history.ops().to_vec();
        let start = history.max_time() + 1;
        let key = b"disagree".to_vec();
        let mut push = |process: u64, call: Call, invoke: u64, complete: u64, outcome: Outcome| {
            ops.push(Op {
                process,
                key: key.clone(),
                call,
                invoke: start + invoke,
                complete: Some(start + complete),
                outcome,
            });
        };
        for i in 0..16u64 {
            push(
                100 + i,
                Call::write(format!("{i}")),
                0,
                100,
                Outcome::WriteOk,
            );
        }
        let read = |value: &str| Outcome::ReadOk(Some(value.as_bytes().to_vec()));
        push(200, Call::Read, 10, 20, read("3"));
        push(200, Call::Read, 30, 40, read("11"));
        push(201, Call::Read, 11, 21, read("11"));
        push(201, Call::Read, 31, 41, read("3"));
        let history: History = ops.into_iter().collect();
        let report = timed_check("disagreeing readers", &history, &finals);
        let Verdict::NotLinearizable {
            key: bad,
            ops: witness,
        } = &report.verdict
        else {
            panic!("{:?}", report.verdict);
        };
        assert_eq!(bad, b"disagree");
        assert_eq!(witness.len(), 6, "{}", report.verdict);
    }

    /// `cargo test -p shoal-engine --release --test check stress -- --ignored --nocapture`
    ///
    /// 20 clients, 10,000 operations over 100 keys (100 per key), and harder variants: 15%
    /// indeterminate operations, 10% stalled operations, 300 operations per key,
    /// write-heavy, and a single key of 5,000 operations; 20 seeds each.
    #[test]
    #[ignore = "stress test: run by hand, in release"]
    fn stress_twenty_clients_ten_thousand_ops() {
        let base = Workload {
            clients: 20,
            ops: 10_000,
            ops_per_key: 100,
            info_percent: 5,
            ..CHAOS_LIKE
        };
        let variants = [
            ("20 clients, 100 ops/key", base),
            (
                "15% indeterminate",
                Workload {
                    info_percent: 15,
                    ..base
                },
            ),
            (
                "10% stalled",
                Workload {
                    stall_percent: 10,
                    ..base
                },
            ),
            (
                "300 ops/key",
                Workload {
                    ops_per_key: 300,
                    ..base
                },
            ),
            (
                "write-heavy",
                Workload {
                    read_percent: 10,
                    cas_percent: 10,
                    ..base
                },
            ),
            (
                "one key, 10 clients",
                Workload {
                    clients: 10,
                    ops: 5_000,
                    ops_per_key: 5_000,
                    ..base
                },
            ),
        ];
        for (name, workload) in variants {
            let started = Instant::now();
            let mut worst_key = 0;
            let mut steps = 0;
            for seed in 0..20 {
                let (history, finals) = generate(seed, workload);
                let report = check_final_reads(&history, &finals, &CheckConfig::default()).unwrap();
                assert_eq!(report.verdict, Verdict::Linearizable, "{name}, seed {seed}");
                steps += report.steps;
                worst_key = report
                    .keys
                    .iter()
                    .map(|k| k.steps)
                    .max()
                    .unwrap_or(0)
                    .max(worst_key);
            }
            eprintln!(
                "stress {name}: 20 runs of {} ops (and final reads), {steps} steps, worst key {worst_key} steps, {:?} (generation included)",
                workload.ops,
                started.elapsed()
            );
        }
    }
}

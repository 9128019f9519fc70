//! Known linearizable and non-linearizable histories, the recorder, and the JSON lines.

use std::collections::BTreeMap;

use super::*;

fn v(text: &str) -> Option<Value> {
    Some(text.as_bytes().to_vec())
}

/// Builds histories tersely: every operation on key "k" unless stated.
#[derive(Default)]
struct Builder {
    history: History,
    next_process: u64,
}

impl Builder {
    fn op(
        &mut self,
        key: &str,
        call: Call,
        invoke: u64,
        complete: Option<u64>,
        outcome: Outcome,
    ) -> &mut Self {
        self.next_process += 1;
        self.history.push(Op {
            process: self.next_process,
            key: key.as_bytes().to_vec(),
            call,
            invoke,
            complete,
            outcome,
        });
        self
    }
    fn write(&mut self, value: &str, invoke: u64, complete: u64) -> &mut Self {
        self.op(
            "k",
            Call::write(value),
            invoke,
            Some(complete),
            Outcome::WriteOk,
        )
    }
    fn read(&mut self, value: Option<&str>, invoke: u64, complete: u64) -> &mut Self {
        self.op(
            "k",
            Call::Read,
            invoke,
            Some(complete),
            Outcome::ReadOk(value.map(|v| v.as_bytes().to_vec())),
        )
    }
    fn cas(
        &mut self,
        expected: Option<&str>,
        new: &str,
        swapped: bool,
        invoke: u64,
        complete: u64,
    ) -> &mut Self {
        self.op(
            "k",
            Call::cas(expected, new),
            invoke,
            Some(complete),
            Outcome::CasOk(swapped),
        )
    }
    fn info_write(&mut self, value: &str, invoke: u64, gave_up: u64) -> &mut Self {
        self.op(
            "k",
            Call::write(value),
            invoke,
            Some(gave_up),
            Outcome::Info,
        )
    }
    fn info_cas(&mut self, expected: Option<&str>, new: &str, invoke: u64) -> &mut Self {
        self.op(
            "k",
            Call::cas(expected, new),
            invoke,
            None,
            Outcome::Pending,
        )
    }
    fn failed_write(&mut self, value: &str, invoke: u64, complete: u64) -> &mut Self {
        self.op(
            "k",
            Call::write(value),
            invoke,
            Some(complete),
            Outcome::Fail,
        )
    }
    fn verdict(&self) -> Verdict {
        check(&self.history, &CheckConfig::default())
            .unwrap()
            .verdict
    }
    fn assert_linearizable(&self) {
        assert_eq!(
            self.verdict(),
            Verdict::Linearizable,
            "{}",
            self.history.to_jsonl()
        );
    }
    /// Asserts a violation and that its counterexample is itself non-linearizable and no
    /// larger than `max_ops`.
    fn assert_violation(&self, max_ops: usize) -> Vec<Op> {
        let Verdict::NotLinearizable { key, ops } = self.verdict() else {
            panic!("expected a violation:\n{}", self.history.to_jsonl());
        };
        assert!(
            !ops.is_empty() && ops.len() <= max_ops,
            "counterexample of {} ops: {ops:#?}",
            ops.len()
        );
        assert!(ops.iter().all(|op| op.key == key));
        let again = check(&ops.iter().cloned().collect(), &CheckConfig::default()).unwrap();
        assert!(
            matches!(again.verdict, Verdict::NotLinearizable { .. }),
            "counterexample is linearizable: {ops:#?}"
        );
        ops
    }
}

#[test]
fn empty_history_is_linearizable() {
    Builder::default().assert_linearizable();
}

#[test]
fn read_of_a_fresh_register_is_absent() {
    Builder::default().read(None, 0, 1).assert_linearizable();
    Builder::default().read(Some("x"), 0, 1).assert_violation(1);
}

#[test]
fn sequential_and_concurrent_writes_and_reads() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .read(Some("1"), 11, 12)
        .write("2", 13, 20)
        .read(Some("2"), 21, 22);
    b.assert_linearizable();
    // A read concurrent with a write may see either value.
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 20, 30)
        .read(Some("1"), 15, 25)
        .read(Some("2"), 16, 26);
    b.assert_linearizable();
}

#[test]
fn stale_read_after_acknowledged_write() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 11, 20)
        .read(Some("1"), 21, 30);
    let ops = b.assert_violation(3);
    assert_eq!(
        ops.len(),
        3,
        "write 1, write 2 and the stale read are all needed: {ops:#?}"
    );
}

#[test]
fn absent_read_after_acknowledged_write() {
    let mut b = Builder::default();
    b.write("1", 0, 10).read(None, 11, 12);
    b.assert_violation(2);
}

#[test]
fn equal_times_are_concurrent() {
    let mut b = Builder::default();
    b.write("1", 0, 10).read(None, 10, 12);
    b.assert_linearizable();
}

#[test]
fn two_concurrent_writes_read_in_impossible_order() {
    // Two long concurrent writes: either order is fine, but readers must agree on one.
    let mut b = Builder::default();
    b.write("1", 0, 100).write("2", 0, 100);
    b.read(Some("1"), 10, 20).read(Some("2"), 30, 40);
    b.read(Some("1"), 11, 21).read(Some("2"), 31, 41);
    b.assert_linearizable();
    // A reader that sees them in the other order.
    b.read(Some("2"), 12, 22).read(Some("1"), 32, 42);
    let ops = b.assert_violation(6);
    assert!(ops.len() >= 4, "{ops:#?}");
    // Once both writes completed, the value no longer changes.
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 0, 10)
        .read(Some("1"), 11, 12)
        .read(Some("2"), 13, 14);
    b.assert_violation(4);
}

#[test]
fn cas_on_stale_value_succeeding() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 11, 20)
        .cas(Some("1"), "3", true, 21, 30);
    b.assert_violation(3);
    // A matching compare-and-set is fine, and so is a mismatch on the stale value.
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 11, 20)
        .cas(Some("2"), "3", true, 21, 30)
        .read(Some("3"), 31, 32);
    b.cas(Some("1"), "4", false, 33, 34)
        .cas(None, "5", false, 35, 36);
    b.assert_linearizable();
}

#[test]
fn cas_mismatch_on_the_current_value() {
    let mut b = Builder::default();
    b.write("1", 0, 10).cas(Some("1"), "2", false, 11, 20);
    b.assert_violation(2);
    let mut b = Builder::default();
    b.cas(None, "2", false, 0, 10);
    b.assert_violation(1);
}

#[test]
fn cas_mismatch_explained_by_an_indeterminate_write() {
    // The mismatch needs some foreign value: only the timed-out write can give it.
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .info_write("2", 11, 12)
        .cas(Some("1"), "3", false, 20, 30);
    b.assert_linearizable();
}

#[test]
fn indeterminate_write_later_observed() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .info_write("2", 11, 15)
        .read(Some("1"), 16, 17)
        .read(Some("2"), 100, 101);
    b.assert_linearizable();
    // Observed, but read back before it was invoked.
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .read(Some("2"), 11, 12)
        .info_write("2", 20, 25);
    b.assert_violation(2);
}

#[test]
fn indeterminate_write_never_observed() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .info_write("2", 11, 15)
        .read(Some("1"), 16, 17)
        .read(Some("1"), 100, 101);
    b.assert_linearizable();
    // Once observed, it cannot be undone by nothing.
    b.read(Some("2"), 200, 201).read(Some("1"), 300, 301);
    b.assert_violation(5);
}

#[test]
fn indeterminate_cas() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .info_cas(Some("1"), "2", 11)
        .read(Some("1"), 20, 21)
        .read(Some("2"), 30, 31);
    b.assert_linearizable();
    // An indeterminate compare-and-set cannot swap from a value the register did not hold.
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .info_cas(Some("9"), "2", 11)
        .read(Some("2"), 30, 31);
    b.assert_violation(3);
}

#[test]
fn failed_write_observed() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .failed_write("2", 11, 12)
        .read(Some("2"), 20, 21);
    let ops = b.assert_violation(2);
    assert!(
        ops.iter().all(|op| op.outcome != Outcome::Fail),
        "failed ops never matter: {ops:#?}"
    );
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .failed_write("2", 11, 12)
        .read(Some("1"), 20, 21);
    b.assert_linearizable();
}

#[test]
fn lost_acknowledged_write_detected_by_final_read() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 5, 20)
        .info_write("3", 25, 30);
    let history = b.history.clone();
    let config = CheckConfig::default();
    let finals = |value: Option<&str>| {
        BTreeMap::from([(b"k".to_vec(), value.map(|v| v.as_bytes().to_vec()))])
    };
    for ok in [Some("1"), Some("2"), Some("3")] {
        let report = check_final_reads(&history, &finals(ok), &config).unwrap();
        assert_eq!(report.verdict, Verdict::Linearizable, "final {ok:?}");
    }
    for lost in [None, Some("4")] {
        let report = check_final_reads(&history, &finals(lost), &config).unwrap();
        let Verdict::NotLinearizable { ops, .. } = report.verdict else {
            panic!("final {lost:?} not caught");
        };
        assert!(ops.iter().any(|op| op.process == FINAL_READ_PROCESS));
    }
    // Both writes done, "1" strictly after "2": reading "2" back loses "1".
    let mut b = Builder::default();
    b.write("2", 0, 10).write("1", 11, 20);
    let report = check_final_reads(&b.history, &finals(Some("2")), &config).unwrap();
    assert!(matches!(report.verdict, Verdict::NotLinearizable { .. }));
    // A key never written must read back absent.
    let report = check_final_reads(&History::new(), &finals(Some("1")), &config).unwrap();
    assert!(matches!(report.verdict, Verdict::NotLinearizable { .. }));
}

#[test]
fn keys_are_independent_and_the_first_bad_key_is_reported() {
    let mut b = Builder::default();
    b.op("a", Call::write("1"), 0, Some(10), Outcome::WriteOk);
    b.op("b", Call::Read, 11, Some(12), Outcome::ReadOk(None));
    b.op("z", Call::Read, 0, Some(1), Outcome::ReadOk(v("nobody")));
    b.op("c", Call::Read, 0, Some(1), Outcome::ReadOk(v("nobody")));
    let report = check(&b.history, &CheckConfig::default()).unwrap();
    let Verdict::NotLinearizable { key, ops } = &report.verdict else {
        panic!("{:?}", report.verdict);
    };
    assert_eq!(key, b"c");
    assert_eq!(ops.len(), 1);
    let verdicts: Vec<(&[u8], KeyVerdict)> = report
        .keys
        .iter()
        .map(|k| (k.key.as_slice(), k.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            (&b"a"[..], KeyVerdict::Linearizable),
            (&b"b"[..], KeyVerdict::Linearizable),
            (&b"c"[..], KeyVerdict::NotLinearizable),
            (&b"z"[..], KeyVerdict::NotLinearizable),
        ]
    );
    assert_eq!(report.ops, 4);
}

#[test]
fn counterexample_is_shrunk_to_the_violation() {
    // Many good operations, then one stale read in the middle, then more.
    let mut b = Builder::default();
    let mut t = 0;
    for i in 0..30 {
        b.write(&format!("w{i}"), t, t + 5)
            .read(Some(&format!("w{i}")), t + 6, t + 7);
        t += 10;
    }
    b.read(Some("w3"), t, t + 1);
    for i in 30..40 {
        b.write(&format!("w{i}"), t + 2, t + 5);
        t += 10;
    }
    let ops = b.assert_violation(3);
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[2].outcome, Outcome::ReadOk(v("w3")));
    let text = Verdict::NotLinearizable {
        key: b"k".to_vec(),
        ops,
    }
    .to_string();
    assert!(text.starts_with("not linearizable on key \"k\""), "{text}");
    assert!(text.contains("read -> ok \"w3\""), "{text}");
}

#[test]
fn exhausted_budget_is_unknown_not_a_pass() {
    // Eight concurrent writes, and two readers that see two of them in opposite orders (no
    // linear-time refutation sees it: the search must).
    let mut b = Builder::default();
    for i in 0..8 {
        b.write(&i.to_string(), 0, 100);
    }
    b.read(Some("3"), 10, 20).read(Some("7"), 30, 40);
    b.read(Some("7"), 11, 21).read(Some("3"), 31, 41);
    let tiny = CheckConfig {
        max_steps_per_key: 50,
        max_shrink_steps: 50,
    };
    let report = check(&b.history, &tiny).unwrap();
    assert_eq!(
        report.verdict,
        Verdict::Unknown {
            keys: vec![b"k".to_vec()]
        }
    );
    assert!(!report.is_linearizable());
    assert_eq!(report.keys[0].verdict, KeyVerdict::Unknown);
    assert!(report.verdict.to_string().starts_with("unknown"));
    // With the default budget it is refuted.
    assert_eq!(b.assert_violation(6).len(), 6);
}

#[test]
fn verdicts_do_not_depend_on_recording_order() {
    let mut b = Builder::default();
    b.write("1", 0, 10)
        .write("2", 0, 10)
        .read(Some("1"), 11, 12)
        .read(Some("2"), 13, 14)
        .read(Some("1"), 15, 16);
    let forward = check(&b.history, &CheckConfig::default()).unwrap();
    let reversed: History = b.history.ops().iter().rev().cloned().collect();
    let backward = check(&reversed, &CheckConfig::default()).unwrap();
    assert_eq!(forward.verdict, backward.verdict);
}

#[test]
fn recorder_rejects_misuse() {
    let mut history = History::new();
    let read = history.invoke(1, "k", Call::Read, 10);
    assert_eq!(
        history.complete(read, Outcome::WriteOk, 20),
        Err(HistoryError::OutcomeMismatch {
            op: read,
            call: "read"
        })
    );
    assert_eq!(
        history.complete(read, Outcome::ReadOk(None), 5),
        Err(HistoryError::CompletedBeforeInvoked {
            op: read,
            invoke: 10,
            complete: 5
        })
    );
    assert_eq!(
        history.complete(read, Outcome::Pending, 20),
        Err(HistoryError::CompletedAsPending { op: read })
    );
    assert_eq!(history.complete(read, Outcome::ReadOk(None), 20), Ok(()));
    assert_eq!(
        history.complete(read, Outcome::Fail, 30),
        Err(HistoryError::AlreadyCompleted { op: read })
    );
    assert_eq!(
        history.complete(OpId(7), Outcome::Fail, 30),
        Err(HistoryError::UnknownOp { op: OpId(7) })
    );
    // Malformed pushed operations are refused by the checker.
    history.push(Op {
        process: 2,
        key: b"k".to_vec(),
        call: Call::write("x"),
        invoke: 0,
        complete: None,
        outcome: Outcome::WriteOk,
    });
    assert_eq!(
        check(&history, &CheckConfig::default()),
        Err(HistoryError::MissingCompletion { op: OpId(1) })
    );
}

#[test]
fn shared_recorder_from_threads() {
    let shared = SharedHistory::new();
    std::thread::scope(|scope| {
        for process in 0..4u64 {
            let shared = shared.clone();
            scope.spawn(move || {
                for i in 0..50u64 {
                    let t = i * 10;
                    let id = shared.invoke(
                        process,
                        format!("k{process}"),
                        Call::write(format!("{process}-{i}")),
                        t,
                    );
                    shared.complete(id, Outcome::WriteOk, t + 5).unwrap();
                }
            });
        }
    });
    assert_eq!(shared.snapshot().len(), 200);
    let history = shared.into_history();
    assert_eq!(history.len(), 200);
    assert!(
        check(&history, &CheckConfig::default())
            .unwrap()
            .is_linearizable()
    );
}

#[test]
fn jsonl_rows_have_the_jepsen_shape() {
    let mut history = History::new();
    let w = history.invoke(3, "k1", Call::write("v7"), 1200);
    let r = history.invoke(4, "k1", Call::Read, 1300);
    let c = history.invoke(5, "k1", Call::cas(Some("v6"), "v8"), 1400);
    let p = history.invoke(6, "k1", Call::cas(None::<&str>, "v9"), 1500);
    history.complete(w, Outcome::WriteOk, 1850).unwrap();
    history.complete(r, Outcome::ReadOk(v("v7")), 1900).unwrap();
    history.complete(c, Outcome::CasOk(false), 2000).unwrap();
    let _ = p;
    let expected = concat!(
        r#"{"process":3,"type":"invoke","f":"write","key":"k1","value":"v7","time":1200}"#,
        "\n",
        r#"{"process":4,"type":"invoke","f":"read","key":"k1","value":null,"time":1300}"#,
        "\n",
        r#"{"process":5,"type":"invoke","f":"cas","key":"k1","value":["v6","v8"],"time":1400}"#,
        "\n",
        r#"{"process":6,"type":"invoke","f":"cas","key":"k1","value":[null,"v9"],"time":1500}"#,
        "\n",
        r#"{"process":3,"type":"ok","f":"write","key":"k1","value":"v7","time":1850}"#,
        "\n",
        r#"{"process":4,"type":"ok","f":"read","key":"k1","value":"v7","time":1900}"#,
        "\n",
        r#"{"process":5,"type":"fail","f":"cas","key":"k1","value":["v6","v8"],"time":2000,"error":"cas-mismatch"}"#,
        "\n",
    );
    assert_eq!(history.to_jsonl(), expected);
    assert_eq!(History::from_jsonl(expected).unwrap(), history);
}

#[test]
fn jsonl_round_trips_awkward_bytes_and_outcomes() {
    let mut history = History::new();
    let keys: [&[u8]; 3] = [
        b"quote\"back\\slash\nnl\ttab\x01",
        "ünïcødé ✓ 𝄞".as_bytes(),
        &[0xff, 0x00, 0x80],
    ];
    let mut t = 0;
    for (process, key) in keys.iter().enumerate() {
        let process = process as u64;
        for (call, outcome) in [
            (Call::Write(key.to_vec()), Outcome::WriteOk),
            (Call::Read, Outcome::ReadOk(Some(key.to_vec()))),
            (Call::Read, Outcome::ReadOk(None)),
            (Call::Read, Outcome::Info),
            (Call::Write(vec![]), Outcome::Fail),
            (
                Call::Cas {
                    expected: None,
                    new: key.to_vec(),
                },
                Outcome::CasOk(true),
            ),
            (
                Call::Cas {
                    expected: Some(vec![0xfe]),
                    new: b"x".to_vec(),
                },
                Outcome::Fail,
            ),
            (
                Call::Cas {
                    expected: Some(b"y".to_vec()),
                    new: vec![],
                },
                Outcome::Info,
            ),
        ] {
            let id = history.invoke(process, key.to_vec(), call, t);
            history.complete(id, outcome, t + 3).unwrap();
            t += 3;
        }
        history.invoke(process, key.to_vec(), Call::write("late"), t);
    }
    let text = history.to_jsonl();
    assert_eq!(text.lines().count(), 3 * 17);
    let parsed = History::from_jsonl(&text).unwrap();
    let sorted = |h: &History| {
        let mut ops = h.ops().to_vec();
        ops.sort_by_key(|op| (op.invoke, op.process));
        ops
    };
    assert_eq!(sorted(&parsed), sorted(&history));
    assert_eq!(parsed.to_jsonl(), text);
}

#[test]
fn jsonl_parser_skips_other_workloads_and_reads_jepsen_numbers() {
    let text = r#"
{"process":"nemesis","type":"info","f":"partition","value":null,"time":1}
{"process":0,"type":"invoke","f":"checkout","key":"cart","value":{"sku":3},"time":2}
{"time":3,"index":7,"process":1,"f":"write","type":"invoke","key":5,"value":42}
{"process":0,"type":"ok","f":"checkout","key":"cart","value":{"sku":3},"time":4}
{"process":1,"type":"ok","f":"write","key":5,"value":42,"time":5}
{"process":2,"type":"invoke","f":"read","key":5,"value":null,"time":6}
{"process":2,"type":"ok","f":"read","key":5,"value":"\u0034\u0032","time":7}
"#;
    let history = History::from_jsonl(text).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history.ops()[0].key, b"5");
    assert_eq!(history.ops()[0].call, Call::write("42"));
    assert_eq!(history.ops()[1].outcome, Outcome::ReadOk(v("42")));
    assert!(
        check(&history, &CheckConfig::default())
            .unwrap()
            .is_linearizable()
    );
}

#[test]
fn jsonl_parser_reports_bad_lines() {
    let cases = [
        ("not json", 1),
        (
            r#"{"process":1,"type":"invoke","f":"read","key":"k","value":null}"#,
            1,
        ),
        (
            r#"{"process":1,"type":"ok","f":"read","key":"k","value":null,"time":1}"#,
            1,
        ),
        (
            "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"value\":null,\"time\":1}\n\
             {\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"value\":null,\"time\":2}",
            2,
        ),
        (
            "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"value\":null,\"time\":1}\n\
             {\"process\":1,\"type\":\"ok\",\"f\":\"write\",\"key\":\"k\",\"value\":\"x\",\"time\":2}",
            2,
        ),
        (
            r#"{"process":1,"type":"invoke","f":"cas","key":"k","value":"x","time":1}"#,
            1,
        ),
        (
            r#"{"process":1,"type":"invoke","f":"write","key":"k","value":"\ud800","time":1}"#,
            1,
        ),
        (
            r#"{"process":1,"type":"invoke","f":"write","key":"k","value":[1,2,300],"time":1}"#,
            1,
        ),
        (
            r#"{"process":1,"type":"invoke","f":"write","key":"k","value":"x","time":1} x"#,
            1,
        ),
        (&format!("{}{}", "[".repeat(100), "]".repeat(100)), 1),
    ];
    for (text, line) in cases {
        let error = History::from_jsonl(text).unwrap_err();
        assert_eq!(error.line, line, "{text}: {error}");
    }
}

#[test]
fn final_reads_are_a_well_formed_process() {
    let mut history = History::new();
    let w = history.invoke(1, "a", Call::write("1"), 0);
    history.complete(w, Outcome::WriteOk, 5).unwrap();
    let finals = BTreeMap::from([
        (b"a".to_vec(), v("1")),
        (b"b".to_vec(), None),
        (b"c".to_vec(), None),
    ]);
    let with_reads = history.with_final_reads(&finals);
    assert_eq!(with_reads.len(), 4);
    assert_eq!(
        History::from_jsonl(&with_reads.to_jsonl()).unwrap().len(),
        4
    );
    assert!(
        check_final_reads(&history, &finals, &CheckConfig::default())
            .unwrap()
            .is_linearizable()
    );
}

//! Fuzzing (bounded proptest runs that CI executes) of what the binary parses: `node.toml`
//! and `cluster.toml` text (arbitrary and mutated), and the request bodies nodes decode from
//! clients (write, read and admin bodies, admin replies). Every input ends in a value or an
//! error, never a panic; a configuration that loads also validates. Run longer with
//! `SHOAL_FUZZ_CASES=100000 cargo test -p shoal --release --test fuzz_config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use shoal::api::{AdminBody, AdminReply, ReadBody, WriteBody};
use shoal::config::{ClusterConfig, NodeConfig};

fn cases(default: u32) -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const NODE_TOML: &str = r#"id = 2
listen = "127.0.0.1:7002"
cluster_file = "../cluster.toml"
fault_hook = false
log_level = "info"

[tls]
ca = "ca.pem"
cert = "node.pem"
key = "node-key.pem"

[timing]
tick_ms = 10
heartbeat_ms = 100
election_timeout_min_ms = 1000
election_timeout_max_ms = 2000
lease_ms = 800

[snapshot]
max_log_entries = 100000
max_log_bytes = 268435456
keep = 2

[wal]
segment_bytes = 67108864
max_bytes = 1073741824

[passwords]
argon2_memory_kib = 19456
argon2_iterations = 2
argon2_lanes = 1
session_ttl_secs = 86400
"#;

const CLUSTER_TOML: &str = r#"name = "shoal"

[[member]]
id = 1
addr = "127.0.0.1:7001"

[[member]]
id = 2
addr = "127.0.0.1:7002"
client_addr = "127.0.0.1:8002"
"#;

/// Parses `text` as both configurations, directly and through the loaders (a file).
fn parse_all(text: &str) {
    if let Ok(node) = toml::from_str::<NodeConfig>(text) {
        let _ = node.validate();
        let _ = node.to_toml();
    }
    if let Ok(cluster) = toml::from_str::<ClusterConfig>(text) {
        let _ = cluster.validate();
        let _ = cluster.to_toml();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.toml");
    std::fs::write(&path, text).unwrap();
    if let Ok(node) = NodeConfig::load(&path) {
        // What loads is valid and survives a round trip.
        node.validate().unwrap();
        let again: NodeConfig = toml::from_str(&node.to_toml().unwrap()).unwrap();
        assert_eq!(again, node);
    }
    if let Ok(cluster) = ClusterConfig::load(&path) {
        cluster.validate().unwrap();
    }
}

/// A line-level mutation of a valid file: delete, duplicate, or replace a line, or splice
/// arbitrary characters into it.
fn mutate(text: &str, edits: &[(prop::sample::Index, u8, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (at, op, junk) in edits {
        if lines.is_empty() {
            lines.push(junk.clone());
            continue;
        }
        let i = at.index(lines.len());
        match op % 5 {
            0 => {
                lines.remove(i);
            }
            1 => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            2 => lines[i] = junk.clone(),
            3 => {
                // Replace the value after `=` (a number becomes text, a huge number, ...).
                if let Some((key, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{key}= {junk}");
                }
            }
            _ => {
                let cut = lines[i]
                    .char_indices()
                    .map(|(c, _)| c)
                    .nth(junk.len() % (lines[i].chars().count() + 1))
                    .unwrap_or(lines[i].len());
                lines[i].insert_str(cut, junk);
            }
        }
    }
    lines.join("\n")
}

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"[::1]:0\"".to_owned()),
        Just("true".to_owned()),
        Just("[1, 2]".to_owned()),
        Just("1e308".to_owned()),
        Just("[[member]]".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Arbitrary text.
    #[test]
    fn arbitrary_text_never_panics_the_config_parsers(text in "\\PC{0,400}") {
        parse_all(&text);
    }

    /// Mutations of a valid node.toml and cluster.toml.
    #[test]
    fn mutated_configs_parse_or_fail_cleanly(
        node in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), junk()), 1..5),
    ) {
        let base = if node { NODE_TOML } else { CLUSTER_TOML };
        parse_all(&mutate(base, &edits));
    }

    /// Client request bodies and admin replies from arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic_the_body_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(body) = WriteBody::from_bytes(&bytes) {
            prop_assert_eq!(WriteBody::from_bytes(&body.to_bytes()).unwrap(), body);
        }
        if let Ok(body) = ReadBody::from_bytes(&bytes) {
            prop_assert_eq!(ReadBody::from_bytes(&body.to_bytes()).unwrap(), body);
        }
        if let Ok(body) = AdminBody::from_bytes(&bytes) {
            let _ = body.to_bytes();
        }
        let _ = AdminReply::from_bytes(&bytes);
    }
}

#[test]
fn the_valid_examples_load() {
    toml::from_str::<NodeConfig>(NODE_TOML)
        .unwrap()
        .validate()
        .unwrap();
    toml::from_str::<ClusterConfig>(CLUSTER_TOML)
        .unwrap()
        .validate()
        .unwrap();
}

//! Architecture invariant: the Raft core's module tree imports no I/O, no clock and no thread
//! RNG (ARCHITECTURE.md, "Engine core"). Checked on the source text, so a violation fails CI.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "std::fs",
    "std::time::Instant",
    "std::time::SystemTime",
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "rand::rng",
    "ThreadRng",
    "std::thread",
    "std::io",
];

#[test]
fn the_core_imports_no_io_clock_or_thread_rng() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (line_no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                assert!(
                    !code.contains(word),
                    "{}:{}: the core must not use `{word}`: {line}",
                    path.display(),
                    line_no + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} files found under {}",
        dir.display()
    );
}

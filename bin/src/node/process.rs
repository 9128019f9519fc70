//! Node processes: the pid file and signals (`cluster down`, the `cluster up` prompt, tests).

use std::path::{Path, PathBuf};

/// The pid file's name inside a node's data directory.
pub const PID_FILE: &str = "node.pid";

/// The logs directory inside a node's data directory.
pub const LOGS_DIR: &str = "logs";

/// `DATA/node.pid`.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join(PID_FILE)
}

/// Reads the pid in `DATA/node.pid`, if there is a well-formed one.
pub fn read_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file(data_dir))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
}

/// A signal to send to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Asks for a clean shutdown.
    Term,
    /// Kills at once (a crash, as far as the node's storage is concerned).
    Kill,
    /// Pauses the process.
    Stop,
    /// Resumes a paused process.
    Continue,
    /// Checks that the process exists, sending nothing.
    Probe,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Continue => libc::SIGCONT,
            Signal::Probe => 0,
        }
    }
}

/// Sends `signal` to process `pid`.
#[allow(unsafe_code)]
pub fn signal(pid: i32, signal: Signal) -> std::io::Result<()> {
    if pid <= 0 {
        // kill(2) with 0 or a negative pid signals whole process groups: never wanted here.
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid pid {pid}"),
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; `pid` is positive, so
    // it names one process, never a group.
    let result = unsafe { libc::kill(pid, signal.number()) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether process `pid` exists and is a `shoal node` (on Linux, from `/proc/PID/cmdline`; a
/// stale pid file whose pid was reused by another program is not mistaken for a node).
pub fn is_node_process(pid: i32) -> bool {
    if signal(pid, Signal::Probe).is_err() {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            // A zombie has an empty command line: it is gone as far as we care.
            !args.is_empty() && args.iter().any(|a| *a == b"node")
        }
        // Without /proc, trust the probe.
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

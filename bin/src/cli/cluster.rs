//! `shoal cluster up [--nodes N] [--detach]` and `shoal cluster down`: a local cluster of
//! `shoal node` child processes, with an interactive prompt to kill, stop and start them.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use super::client::{connect, print};
use super::{CliError, CliResult, GlobalArgs};
use crate::api::{AdminBody, AdminReply, NodeRole};
use crate::config::{CLUSTER_FILE, ClusterConfig};
use crate::layout::{self, InitOptions};
use crate::node::process::{self, Signal};

/// How long a node gets to shut down cleanly before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `cluster up --detach` waits for every node to write its pid file.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// `shoal cluster ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Starts every node of the cluster directory (initialising it first if needed) and
    /// opens a prompt: list, kill ID, stop ID, start ID, leader, status, exit.
    Up(UpArgs),
    /// Stops the nodes started with `cluster up --detach` (SIGTERM, then SIGKILL after 10 s).
    Down,
}

/// Nodes of a cluster that `cluster up` initialises when `--nodes` is not given.
const DEFAULT_NODES: u64 = 3;

/// Arguments of `shoal cluster up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// How many nodes, when the cluster directory is initialised now [default: 3]. An existing
    /// cluster keeps its members: asking it for another count is an error.
    #[arg(long)]
    pub nodes: Option<u64>,
    /// Start the nodes in the background and return (stop them with `shoal cluster down`).
    #[arg(long)]
    pub detach: bool,
    /// The host the nodes listen on, when the cluster directory is initialised now.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Node N listens on BASE_PORT + N - 1, when the cluster directory is initialised now.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
}

/// Runs `shoal cluster ...`.
pub fn run(global: &GlobalArgs, command: &ClusterCommand) -> CliResult {
    match command {
        ClusterCommand::Up(args) => up(global, args),
        ClusterCommand::Down => down(global),
    }
}

fn load_or_init(global: &GlobalArgs, args: &UpArgs) -> CliResult<ClusterConfig> {
    let dir = &global.cluster_dir;
    let path = dir.join(CLUSTER_FILE);
    if path.is_file() {
        let cluster = ClusterConfig::load(&path).map_err(|e| CliError::invalid(e.to_string()))?;
        let members = cluster.members.len() as u64;
        if let Some(nodes) = args.nodes
            && nodes != members
        {
            return Err(CliError::invalid(format!(
                "{} already holds a cluster of {members} node(s); --nodes {nodes} applies only \
                 to a new cluster directory (drop --nodes, change membership with \
                 `shoal member add`/`remove`, or use another --cluster-dir)",
                dir.display()
            )));
        }
        return Ok(cluster);
    }
    let report = layout::init_cluster(&InitOptions {
        dir: dir.clone(),
        nodes: args.nodes.unwrap_or(DEFAULT_NODES),
        host: args.host.clone(),
        base_port: args.base_port,
        name: "shoal".into(),
    })?;
    if !global.json {
        eprintln!(
            "initialised a cluster of {} node(s) in {}",
            report.cluster.members.len(),
            dir.display()
        );
    }
    Ok(report.cluster)
}

/// Starts `shoal node` for node `id`, its output appended to `DATA/logs/stdout.log`.
fn spawn_node(cluster_dir: &Path, id: u64, detach: bool) -> CliResult<Child> {
    let data_dir = layout::node_dir(cluster_dir, id);
    let logs = data_dir.join(process::LOGS_DIR);
    std::fs::create_dir_all(&logs)
        .map_err(|e| CliError::io(format!("cannot create {}: {e}", logs.display())))?;
    let log_path = logs.join("stdout.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::io(format!("cannot open {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| CliError::io(format!("cannot open {}: {e}", log_path.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::io(format!("cannot find the shoal executable: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("node")
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    if detach {
        // Its own process group: the terminal's Ctrl-C and the end of this command leave it
        // running.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    command
        .spawn()
        .map_err(|e| CliError::io(format!("cannot start node {id}: {e}")))
}

/// Waits (bounded) for a started node to write its pid file; fails if it exits first.
fn wait_started(cluster_dir: &Path, id: u64, child: &mut Child) -> CliResult {
    let data_dir = layout::node_dir(cluster_dir, id);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if process::read_pid(&data_dir) == Some(child.id() as i32) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::io(format!(
                "node {id} exited at start ({status}); see {}",
                data_dir
                    .join(process::LOGS_DIR)
                    .join("stdout.log")
                    .display()
            )));
        }
        if Instant::now() >= deadline {
            return Err(CliError::io(format!(
                "node {id} did not start within {START_TIMEOUT:?}; see {}",
                data_dir.join(process::LOGS_DIR).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of node `id` when a `shoal node` process runs for it.
fn running_pid(cluster_dir: &Path, id: u64) -> Option<i32> {
    process::read_pid(&layout::node_dir(cluster_dir, id))
        .filter(|pid| process::is_node_process(*pid))
}

fn up(global: &GlobalArgs, args: &UpArgs) -> CliResult {
    let cluster = load_or_init(global, args)?;
    let dir = &global.cluster_dir;
    let mut children: BTreeMap<u64, Child> = BTreeMap::new();
    let mut already = Vec::new();
    for member in &cluster.members {
        if let Some(pid) = running_pid(dir, member.id) {
            already.push((member.id, pid));
            continue;
        }
        let child = spawn_node(dir, member.id, args.detach)?;
        children.insert(member.id, child);
    }
    let mut failure = None;
    for (id, child) in &mut children {
        if let Err(error) = wait_started(dir, *id, child) {
            failure.get_or_insert(error);
        }
    }
    if let Some(error) = failure {
        if !args.detach {
            stop_all(&mut children);
        }
        return Err(error);
    }
    if args.detach {
        let rows: Vec<_> = cluster
            .members
            .iter()
            .map(|m| {
                let pid = running_pid(dir, m.id);
                json!({"id": m.id, "address": m.addr, "pid": pid,
                       "data_dir": layout::node_dir(dir, m.id).display().to_string()})
            })
            .collect();
        let mut text = String::new();
        for m in &cluster.members {
            let pid = running_pid(dir, m.id).map_or_else(|| "?".into(), |p| p.to_string());
            text.push_str(&format!(
                "node {} at {} running (pid {pid})\n",
                m.id, m.addr
            ));
        }
        text.push_str(&format!(
            "stop them with `shoal --cluster-dir {} cluster down`",
            dir.display()
        ));
        return print(
            global,
            &json!({"cluster_dir": dir.display().to_string(), "nodes": rows}),
            &text,
        );
    }
    for (id, pid) in already {
        println!("node {id} was already running (pid {pid}); the prompt does not manage it");
    }
    prompt(global, &cluster, children)
}

const HELP: &str = "commands: list | kill ID | stop ID | start ID | leader | status | exit";

fn state(child: Option<&mut Child>) -> String {
    match child {
        None => "not started".into(),
        Some(child) => match child.try_wait() {
            Ok(None) => format!("running (pid {})", child.id()),
            Ok(Some(status)) => format!("exited ({status})"),
            Err(e) => format!("unknown ({e})"),
        },
    }
}

fn is_running(child: Option<&mut Child>) -> bool {
    child.is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

/// Waits up to [`STOP_TIMEOUT`] for a child sent SIGTERM to exit, then SIGKILLs it.
fn wait_stopped(child: &mut Child) -> String {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return format!("stopped ({status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    format!("killed after {STOP_TIMEOUT:?} without stopping")
}

/// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL.
fn stop_child(child: &mut Child) -> String {
    if !matches!(child.try_wait(), Ok(None)) {
        return "was not running".into();
    }
    if let Err(e) = process::signal(child.id() as i32, Signal::Term) {
        return format!("cannot signal it: {e}");
    }
    wait_stopped(child)
}

/// Stops every running child: SIGTERM to all at once, then each is waited for.
fn stop_all(children: &mut BTreeMap<u64, Child>) {
    let mut stopping = Vec::new();
    for (id, child) in children.iter_mut() {
        if !matches!(child.try_wait(), Ok(None)) {
            continue;
        }
        match i32::try_from(child.id()).map(|pid| process::signal(pid, Signal::Term)) {
            Ok(Ok(())) => stopping.push(*id),
            _ => println!("node {id}: cannot signal it"),
        }
    }
    for id in stopping {
        if let Some(child) = children.get_mut(&id) {
            println!("node {id}: {}", wait_stopped(child));
        }
    }
}

fn leader_line(global: &GlobalArgs) -> String {
    let connection = match connect(global) {
        Ok(c) => c,
        Err(e) => return format!("cannot ask the cluster: {}", e.message),
    };
    let targets = connection.targets().to_vec();
    let results = connection.admin_each(&targets, &AdminBody::Status);
    for (target, result) in targets.iter().zip(results) {
        if let Ok(AdminReply::Status(status)) = result
            && status.role == NodeRole::Leader
        {
            return format!(
                "node {} at {} is the leader (term {})",
                status.id, target.address, status.term
            );
        }
    }
    "no leader right now".into()
}

fn parse_id(word: Option<&str>, cluster: &ClusterConfig) -> Result<u64, String> {
    let word = word.ok_or("which node? give its id")?;
    let id = word
        .parse::<u64>()
        .map_err(|_| format!("invalid node id {word:?}"))?;
    if cluster.member(id).is_none() {
        return Err(format!("node {id} is not in cluster.toml"));
    }
    Ok(id)
}

fn prompt(
    global: &GlobalArgs,
    cluster: &ClusterConfig,
    mut children: BTreeMap<u64, Child>,
) -> CliResult {
    let dir = &global.cluster_dir;
    println!(
        "cluster of {} node(s) running from {}; logs in {}/node-<id>/logs/",
        cluster.members.len(),
        dir.display(),
        dir.display()
    );
    println!(
        "other terminals: shoal --cluster-dir {} status | kv put K V | kv get K",
        dir.display()
    );
    println!("{HELP}");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("shoal> ");
        let _ = std::io::stdout().flush();
        let Some(Ok(line)) = lines.next() else {
            println!();
            break;
        };
        let mut words = line.split_whitespace();
        let Some(command) = words.next() else {
            continue;
        };
        match command {
            "list" | "ls" => {
                for member in &cluster.members {
                    println!(
                        "node {} at {}: {}",
                        member.id,
                        member.addr,
                        state(children.get_mut(&member.id))
                    );
                }
            }
            "kill" | "stop" | "start" => {
                let id = match parse_id(words.next(), cluster) {
                    Ok(id) => id,
                    Err(e) => {
                        println!("{e}");
                        continue;
                    }
                };
                match command {
                    "kill" => {
                        let running = is_running(children.get_mut(&id));
                        match children.get_mut(&id) {
                            Some(child) if running => {
                                let _ = child.kill();
                                let _ = child.wait();
                                println!("node {id} killed (SIGKILL)");
                            }
                            _ => println!("node {id} is not running"),
                        }
                    }
                    "stop" => match children.get_mut(&id) {
                        Some(child) => println!("node {id}: {}", stop_child(child)),
                        None => println!("node {id} is not running"),
                    },
                    _ => {
                        if is_running(children.get_mut(&id)) || running_pid(dir, id).is_some() {
                            println!("node {id} is already running");
                            continue;
                        }
                        match spawn_node(dir, id, false) {
                            Ok(mut child) => match wait_started(dir, id, &mut child) {
                                Ok(()) => {
                                    println!("node {id} started (pid {})", child.id());
                                    children.insert(id, child);
                                }
                                Err(e) => {
                                    println!("{}", e.message);
                                    children.insert(id, child);
                                }
                            },
                            Err(e) => println!("{}", e.message),
                        }
                    }
                }
            }
            "leader" => println!("{}", leader_line(global)),
            "status" => {
                if let Err(e) = super::status::run(global) {
                    println!("{}", e.message);
                }
            }
            "exit" | "quit" | "q" => break,
            "help" | "?" => println!("{HELP}"),
            other => println!("unknown command {other:?}; {HELP}"),
        }
    }
    stop_all(&mut children);
    Ok(())
}

/// The node directories under `dir` (`node-<id>`) with their ids.
fn node_dirs(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("node-"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                found.push((id, entry.path()));
            }
        }
    }
    found.sort();
    found
}

fn down(global: &GlobalArgs) -> CliResult {
    let dir = &global.cluster_dir;
    if !dir.join(CLUSTER_FILE).is_file() {
        return Err(CliError::invalid(format!(
            "no cluster in {} (no {CLUSTER_FILE})",
            dir.display()
        )));
    }
    let mut running = Vec::new();
    for (id, data_dir) in node_dirs(dir) {
        match process::read_pid(&data_dir) {
            Some(pid) if process::is_node_process(pid) => {
                if let Err(e) = process::signal(pid, Signal::Term) {
                    return Err(CliError::io(format!(
                        "cannot stop node {id} (pid {pid}): {e}"
                    )));
                }
                running.push((id, pid, data_dir));
            }
            Some(_) => {
                // A stale pid file from a node that was killed.
                let _ = std::fs::remove_file(process::pid_file(&data_dir));
            }
            None => {}
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline
        && running
            .iter()
            .any(|(_, pid, _)| process::is_node_process(*pid))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (id, pid, data_dir) in &running {
        let how = if process::is_node_process(*pid) {
            let _ = process::signal(*pid, Signal::Kill);
            let _ = std::fs::remove_file(process::pid_file(data_dir));
            "killed"
        } else {
            "stopped"
        };
        rows.push(json!({"id": id, "pid": pid, "outcome": how}));
        lines.push(format!("node {id} (pid {pid}) {how}"));
    }
    if running.is_empty() {
        lines.push(format!("no node is running in {}", dir.display()));
    }
    print(global, &json!({"nodes": rows}), &lines.join("\n"))
}

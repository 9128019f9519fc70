//! `shoal kv put|get|del|cas|scan`: the plain key-value namespace of the state machine.

use clap::{Args, Subcommand};
use shoal_shop::{Query, Request, Response};

use super::client::{connect, print_response};
use super::{CliError, CliResult, GlobalArgs};

/// `shoal kv ...`
#[derive(Debug, Clone, Subcommand)]
pub enum KvCommand {
    /// Sets KEY to VALUE.
    Put {
        /// The key.
        #[arg(id = "kv_key", value_name = "KEY")]
        key: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Prints the value of KEY (null when absent).
    Get {
        /// The key.
        #[arg(id = "kv_key", value_name = "KEY")]
        key: String,
    },
    /// Deletes KEY.
    Del {
        /// The key.
        #[arg(id = "kv_key", value_name = "KEY")]
        key: String,
    },
    /// Sets KEY to NEW if its value is EXPECTED (`kv cas K EXPECTED NEW`), or if it is absent
    /// (`kv cas K --absent NEW`).
    Cas(CasArgs),
    /// Lists keys starting with PREFIX, in key order.
    Scan(ScanArgs),
}

/// Arguments of `kv cas`.
#[derive(Debug, Clone, Args)]
pub struct CasArgs {
    /// The key.
    #[arg(id = "kv_key", value_name = "KEY")]
    pub key: String,
    /// EXPECTED NEW, or NEW alone with --absent.
    #[arg(num_args = 1..=2, required = true)]
    pub values: Vec<String>,
    /// Succeed only if the key is absent now.
    #[arg(long)]
    pub absent: bool,
}

/// Arguments of `kv scan`.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// The prefix (empty: every key).
    #[arg(default_value = "")]
    pub prefix: String,
    /// Most entries in the page.
    #[arg(long, default_value_t = shoal_shop::validate::DEFAULT_PAGE)]
    pub limit: u32,
    /// Continue after this key (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
}

/// Runs `shoal kv ...`.
pub fn run(global: &GlobalArgs, command: &KvCommand) -> CliResult {
    let (request, query): (Option<Request>, Option<Query>) = match command {
        KvCommand::Put { key, value } => (
            Some(Request::KvPut {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            }),
            None,
        ),
        KvCommand::Del { key } => (
            Some(Request::KvDelete {
                key: key.as_bytes().to_vec(),
            }),
            None,
        ),
        KvCommand::Cas(args) => {
            let (expected, new) = match (args.absent, args.values.as_slice()) {
                (true, [new]) => (None, new),
                (false, [expected, new]) => (Some(expected.as_bytes().to_vec()), new),
                (true, _) => {
                    return Err(CliError::usage("kv cas --absent takes KEY and NEW only"));
                }
                (false, _) => {
                    return Err(CliError::usage(
                        "kv cas takes KEY EXPECTED NEW (or KEY --absent NEW)",
                    ));
                }
            };
            (
                Some(Request::KvCas {
                    key: args.key.as_bytes().to_vec(),
                    expected,
                    new: new.as_bytes().to_vec(),
                }),
                None,
            )
        }
        KvCommand::Get { key } => {
            shoal_shop::validate::key(key.as_bytes())?;
            (
                None,
                Some(Query::KvGet {
                    key: key.as_bytes().to_vec(),
                }),
            )
        }
        KvCommand::Scan(args) => {
            shoal_shop::validate::limit(args.limit)?;
            (
                None,
                Some(Query::KvScan {
                    prefix: args.prefix.as_bytes().to_vec(),
                    after: args.after.as_ref().map(|a| a.as_bytes().to_vec()),
                    limit: args.limit,
                }),
            )
        }
    };
    if let Some(request) = &request {
        request.validate()?;
    }
    let connection = connect(global)?;
    let response: Response = match (request, query) {
        (Some(request), _) => connection.shop(request)?,
        (None, Some(query)) => connection.read(query)?,
        (None, None) => return Err(CliError::usage("nothing to do")),
    };
    print_response(global, &response)
}

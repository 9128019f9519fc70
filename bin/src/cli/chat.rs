//! The chat: `chat send --to EMAIL TEXT`, `chat read [--unread]`, `chat delete MSG_ID`.

use clap::Subcommand;
use shoal_shop::{Action, validate};

use super::client::{authed, connect, print_response};
use super::{CliResult, GlobalArgs};

/// `shoal chat ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ChatCommand {
    /// Sends TEXT to the account with email EMAIL.
    Send {
        /// The recipient's email.
        #[arg(long)]
        to: String,
        /// The message.
        #[arg(allow_hyphen_values = true)]
        text: String,
    },
    /// Reads your messages, oldest first, and marks them read.
    Read {
        /// Only unread messages.
        #[arg(long)]
        unread: bool,
        /// Most messages in the page.
        #[arg(long, default_value_t = validate::DEFAULT_PAGE)]
        limit: u32,
        /// Continue after this message id (the `next` of the previous page).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Deletes a message you sent or received.
    Delete {
        /// The message id.
        id: u64,
    },
}

/// Runs `shoal chat ...`.
pub fn run(global: &GlobalArgs, command: &ChatCommand) -> CliResult {
    let action = match command {
        ChatCommand::Send { to, text } => Action::ChatSend {
            to_email: to.clone(),
            text: text.clone(),
        },
        ChatCommand::Read {
            unread,
            limit,
            after,
        } => Action::ChatRead {
            unread_only: *unread,
            after: *after,
            limit: *limit,
        },
        ChatCommand::Delete { id } => Action::ChatDelete { message_id: *id },
    };
    action.validate()?;
    let request = authed(global, action)?;
    let response = connect(global)?.shop(request)?;
    print_response(global, &response)
}

//! Accounts: `shoal signup`, `login`, `logout`, `account delete`, `users`.
//!
//! The password goes to the node in clear over mutual TLS; the node hashes it (argon2, random
//! salt) before proposing, and only the hash is stored. `login` saves the session token in
//! `DIR/.session` (mode 0600); `--token` or `SHOAL_TOKEN` override it.

use clap::{Args, Subcommand, ValueEnum};
use shoal_shop::{Action, Profile, Query, Response, ShopError, validate};

use super::client::{auth, authed, connect, forget_token, print_response, save_token, token};
use super::{CliResult, GlobalArgs};
use crate::api::WriteBody;

/// The role of a new account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Buys: has a cart and orders.
    Customer,
    /// Sells: has stores and products.
    Owner,
}

/// Arguments of `shoal signup`.
#[derive(Debug, Clone, Args)]
pub struct SignupArgs {
    /// Customer or store owner.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The email (unique).
    #[arg(long)]
    pub email: String,
    /// The password; or set SHOAL_PASSWORD, which keeps it out of the process list and shell
    /// history.
    #[arg(long, env = "SHOAL_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Contact number: 7 to 15 digits, optionally after a leading +.
    #[arg(long, allow_hyphen_values = true)]
    pub contact: String,
    /// Customers: full name.
    #[arg(long)]
    pub name: Option<String>,
    /// Customers: postal address.
    #[arg(long)]
    pub address: Option<String>,
    /// Owners: first name.
    #[arg(long)]
    pub first: Option<String>,
    /// Owners: middle name.
    #[arg(long)]
    pub middle: Option<String>,
    /// Owners: last name.
    #[arg(long)]
    pub last: Option<String>,
}

/// Arguments of `shoal login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The account's email.
    #[arg(long)]
    pub email: String,
    /// The password; or set SHOAL_PASSWORD, which keeps it out of the process list and shell
    /// history.
    #[arg(long, env = "SHOAL_PASSWORD", hide_env_values = true)]
    pub password: String,
}

/// `shoal account ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AccountCommand {
    /// Deletes the logged-in account with its cart, sessions and messages.
    Delete,
}

/// Arguments of `shoal users`.
#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    /// A glob on name or email (`al*`).
    #[arg(long)]
    pub pattern: Option<String>,
    /// Most accounts in the page.
    #[arg(long, default_value_t = validate::DEFAULT_PAGE)]
    pub limit: u32,
    /// Continue after this account id (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<u64>,
}

fn required(field: &str, value: &Option<String>, role: &str) -> Result<String, ShopError> {
    value.clone().ok_or_else(|| {
        ShopError::invalid(field, format!("--{field} is required for --role {role}"))
    })
}

fn not_for(field: &str, value: &Option<String>, role: &str) -> Result<(), ShopError> {
    if value.is_some() {
        return Err(ShopError::invalid(
            field,
            format!("--{field} does not apply to --role {role}"),
        ));
    }
    Ok(())
}

fn password(password: &str) -> Result<(), ShopError> {
    if password.is_empty() {
        return Err(ShopError::invalid("password", "must not be empty"));
    }
    if password.len() > validate::MAX_PASSWORD_BYTES {
        return Err(ShopError::invalid(
            "password",
            format!("must be at most {} bytes", validate::MAX_PASSWORD_BYTES),
        ));
    }
    Ok(())
}

/// The sign-up body, validated with the shop's rules (errors name the field).
pub fn signup_body(args: &SignupArgs) -> Result<WriteBody, ShopError> {
    let profile = match args.role {
        RoleArg::Customer => {
            for (field, value) in [
                ("first", &args.first),
                ("middle", &args.middle),
                ("last", &args.last),
            ] {
                not_for(field, value, "customer")?;
            }
            Profile::Customer {
                name: required("name", &args.name, "customer")?,
                address: required("address", &args.address, "customer")?,
                contact: args.contact.clone(),
            }
        }
        RoleArg::Owner => {
            not_for("name", &args.name, "owner")?;
            not_for("address", &args.address, "owner")?;
            Profile::Owner {
                first: required("first", &args.first, "owner")?,
                middle: args.middle.clone(),
                last: required("last", &args.last, "owner")?,
                contact: args.contact.clone(),
            }
        }
    };
    profile.validate()?;
    validate::email(&args.email)?;
    password(&args.password)?;
    Ok(WriteBody::Signup {
        email: args.email.clone(),
        password: args.password.clone(),
        profile,
    })
}

/// Runs `shoal signup`.
pub fn signup(global: &GlobalArgs, args: &SignupArgs) -> CliResult {
    let body = signup_body(args)?;
    let response = connect(global)?.write(body)?;
    print_response(global, &response)
}

/// Runs `shoal login`.
pub fn login(global: &GlobalArgs, args: &LoginArgs) -> CliResult {
    validate::email(&args.email)?;
    password(&args.password)?;
    let response = connect(global)?.write(WriteBody::Login {
        email: args.email.clone(),
        password: args.password.clone(),
    })?;
    if let Response::Session { token, .. } = &response {
        save_token(global, token)?;
    }
    print_response(global, &response)
}

/// Runs `shoal logout`.
pub fn logout(global: &GlobalArgs) -> CliResult {
    let token = token(global)?;
    let request = authed(global, Action::Logout)?;
    let response = connect(global)?.shop(request)?;
    forget_token(global, Some(&token));
    print_response(global, &response)
}

/// Runs `shoal account ...`.
pub fn account(global: &GlobalArgs, command: &AccountCommand) -> CliResult {
    let AccountCommand::Delete = command;
    let token = token(global)?;
    let request = authed(global, Action::DeleteAccount)?;
    let response = connect(global)?.shop(request)?;
    forget_token(global, Some(&token));
    print_response(global, &response)
}

/// Runs `shoal users`.
pub fn users(global: &GlobalArgs, args: &UsersArgs) -> CliResult {
    if let Some(pattern) = &args.pattern {
        validate::text("pattern", pattern, validate::MAX_PATTERN_CHARS)?;
    }
    validate::limit(args.limit)?;
    let query = Query::Users {
        auth: auth(global)?,
        pattern: args.pattern.clone(),
        after: args.after,
        limit: args.limit,
    };
    let response = connect(global)?.read(query)?;
    print_response(global, &response)
}

//! The `shoal` binary's library: assembles nodes from the crates and implements each
//! subcommand in its own module.

//! The real-process harness of `tests/tests/common`, shared: one copy of the code.
#![allow(dead_code)]

#[path = "../../../tests/tests/common/mod.rs"]
mod harness;

pub use harness::*;

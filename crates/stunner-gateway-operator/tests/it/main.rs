//! The operator binary: `render`, `crds`, and standalone mode end to end with stunnerd.
#![allow(clippy::unwrap_used)] // a test fails loudly by design
#![allow(unreachable_pub)]
#![allow(missing_docs)]

mod cli;
mod mock_api;
mod standalone;
mod support;

//! Integration tests of the renderer: golden cases and properties.
#![allow(clippy::unwrap_used)]
#![allow(unreachable_pub)]
#![allow(missing_docs)]

mod crds;
mod golden;
mod idempotence;

//! The STUNner gateway operator: offline rendering of Gateway API manifests, the CRD
//! manifests, and standalone mode (manifest files in, configs out over CDS). The
//! rendering itself is the pure `stunner_gateway::render`.

pub mod cli;
mod error;
pub mod k8s;
pub mod manifests;
pub mod standalone;

pub use error::Error;

//! Default values and well-known names shared by every component.

/// The only API version this crate emits.
pub const API_VERSION: &str = "v1";
/// The legacy API version accepted on input and converted.
pub const API_VERSION_V1ALPHA1: &str = "v1alpha1";
/// Default instance name.
pub const STUNNERD_NAME: &str = "default-stunnerd";
/// Default log level spec.
pub const LOG_LEVEL: &str = "all:INFO";
/// Default realm.
pub const REALM: &str = "stunner.l7mp.io";
/// Default listener port.
pub const PORT: u16 = 3478;
/// Default metrics port.
pub const METRICS_PORT: u16 = 8080;
/// Default health-check port.
pub const HEALTHCHECK_PORT: u16 = 8086;
/// Default health-check endpoint.
pub const HEALTHCHECK_ENDPOINT: &str = "http://:8086";
/// Default auth service port.
pub const AUTH_SERVICE_PORT: u16 = 8088;
/// Default config discovery (CDS) port.
pub const CONFIG_DISCOVERY_PORT: u16 = 13478;
/// Default config discovery (CDS) address.
pub const CONFIG_DISCOVERY_ADDRESS: &str = ":13478";
/// Placeholder the operator writes as listener address when the node address is to be
/// patched in per node (guaranteed not to parse as an IP).
pub const NODE_ADDRESS_PLACEHOLDER: &str = "__node_address_placeholder";
/// Username of the zero config.
pub const ZERO_USERNAME: &str = "dummy-username";
/// Password of the zero config.
pub const ZERO_PASSWORD: &str = "dummy-password";
/// Listener name of a config built from a TURN URI.
pub const DEFAULT_LISTENER_NAME: &str = "default-listener";
/// Cluster name of a config built from a TURN URI.
pub const DEFAULT_CLUSTER_NAME: &str = "allow-any";

/// Environment variable: config origin.
pub const ENV_CONFIG_ORIGIN: &str = "STUNNER_CONFIG_ORIGIN";
/// Environment variable: instance name.
pub const ENV_NAME: &str = "STUNNER_NAME";
/// Environment variable: instance namespace.
pub const ENV_NAMESPACE: &str = "STUNNER_NAMESPACE";
/// Environment variable: pod IP, expanded into listener addresses.
pub const ENV_ADDR: &str = "STUNNER_ADDR";
/// Environment variable: node name, sent to the CDS as `?node=`.
pub const ENV_NODENAME: &str = "STUNNER_NODENAME";
/// Environment variable: listener port used in config text.
pub const ENV_PORT: &str = "STUNNER_PORT";
/// Environment variable: public port, the fallback of `STUNNER_PORT`.
pub const ENV_PUBLIC_PORT: &str = "STUNNER_PUBLIC_PORT";

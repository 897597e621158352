//! Logging with upstream's level specs (`all:INFO,turn:DEBUG`), changeable at runtime.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// Turns a level spec into a tracing filter: `all:` is the default, other scopes are
/// targets. Unknown levels are skipped.
pub fn filter_for(spec: &str) -> String {
    let mut default = "info".to_string();
    let mut scopes = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (scope, level) = part.split_once(':').unwrap_or(("all", part));
        let level = match level.trim().to_ascii_uppercase().as_str() {
            "DISABLE" => "off",
            "ERROR" => "error",
            "WARN" | "WARNING" => "warn",
            "INFO" => "info",
            "DEBUG" => "debug",
            "TRACE" => "trace",
            _ => continue,
        };
        if scope == "all" {
            default = level.to_string();
        } else if scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            scopes.push(format!("{scope}={level}"));
        }
    }
    // The codec's own warnings about malformed packets would let clients flood the log.
    let mut f = vec![
        default,
        "stun_types=error".into(),
        "turn_types=error".into(),
    ];
    f.extend(scopes);
    f.join(",")
}

/// Changes the level at runtime.
#[derive(Clone)]
pub struct LogHandle(reload::Handle<EnvFilter, tracing_subscriber::Registry>);

impl LogHandle {
    /// Applies a level spec.
    pub fn set(&self, spec: &str) {
        if let Ok(f) = EnvFilter::try_new(filter_for(spec)) {
            let _ = self.0.reload(f);
        }
    }
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogHandle")
    }
}

/// Installs the global subscriber.
pub fn init(spec: &str, json: bool) -> LogHandle {
    let filter = EnvFilter::try_new(filter_for(spec)).unwrap_or_else(|_| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(layer);
    if json {
        let _ = registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init();
    } else {
        let _ = registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init();
    }
    LogHandle(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            filter_for("all:INFO"),
            "info,stun_types=error,turn_types=error"
        );
        assert_eq!(
            filter_for("all:WARN,turn:DEBUG,auth:trace"),
            "warn,stun_types=error,turn_types=error,turn=debug,auth=trace"
        );
        assert_eq!(
            filter_for("all:DISABLE"),
            "off,stun_types=error,turn_types=error"
        );
        assert_eq!(
            filter_for("bogus,all:nope,x y:INFO"),
            "info,stun_types=error,turn_types=error"
        );
    }
}

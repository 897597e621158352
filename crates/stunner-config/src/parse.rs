//! Config text to [`StunnerConfig`]: YAML or JSON, env expansion, v1alpha1 conversion,
//! validation.

use serde_json::Value;

use crate::env::{Env, ProcessEnv, WithPortDefault, expand};
use crate::stunner::StunnerConfig;
use crate::{Error, Errors, decode, defaults};

/// Parses YAML or JSON text into a value tree. JSON is tried first when the text looks
/// like a JSON object, so its errors are reported in JSON terms.
pub(crate) fn parse_value(text: &str) -> Result<Value, Error> {
    if text.trim().is_empty() {
        return Err(Error::Syntax {
            format: "YAML",
            message: "empty config".into(),
        });
    }
    if text.trim_start().starts_with('{') {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => return Ok(v),
            Err(json) => {
                // Flow-style YAML is a superset of JSON; accept it too.
                return serde_saphyr::from_str::<Value>(text).map_err(|_| Error::Syntax {
                    format: "JSON",
                    message: json.to_string(),
                });
            }
        }
    }
    serde_saphyr::from_str::<Value>(text).map_err(|e| Error::Syntax {
        format: "YAML",
        message: one_line(&e.to_string()),
    })
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl StunnerConfig {
    /// Parses config text (YAML or JSON, `v1` or `v1alpha1`), expands `$VAR`/`${VAR}`
    /// from the process environment (except in `auth.credentials`, which stay literal),
    /// and validates. Returns every error found.
    #[allow(clippy::should_implement_trait)] // returns a list of errors, not one
    pub fn from_str(text: &str) -> Result<Self, Errors> {
        Self::from_str_with_env(text, &ProcessEnv)
    }

    /// [`from_str`](Self::from_str) with an explicit environment.
    pub fn from_str_with_env(text: &str, env: &(impl Env + ?Sized)) -> Result<Self, Errors> {
        let (mut c, mut errs) = Self::decode_partial(text, env)?;
        if let Err(more) = c.validate() {
            // Report semantic errors too, except in an object one of whose fields
            // failed to decode: that field holds its default, which would make them
            // misleading (a bad `auth.type` is no reason to ask for a password).
            let decode_failed = |f: &str| {
                errs.iter().filter_map(Error::field).any(|bad| {
                    let parent = bad.rsplit_once('.').map_or("", |(p, _)| p);
                    parent.is_empty()
                        || f == parent
                        || f.strip_prefix(parent)
                            .is_some_and(|rest| rest.starts_with(['.', '[']))
                })
            };
            let keep: Vec<Error> = more
                .0
                .into_iter()
                .filter(|e| errs.is_empty() || !matches!(e, Error::PortConflict { .. }))
                .filter(|e| e.field().is_none_or(|f| !decode_failed(f)))
                .collect();
            errs.extend(keep);
        }
        match Errors::from_vec(errs) {
            Some(e) => Err(e),
            None => Ok(c),
        }
    }

    /// Parses and expands like [`from_str_with_env`](Self::from_str_with_env) but does
    /// not validate: defaults are not injected and semantic errors are not reported
    /// (type errors still are).
    pub fn decode_with_env(text: &str, env: &(impl Env + ?Sized)) -> Result<Self, Errors> {
        let (c, errs) = Self::decode_partial(text, env)?;
        match Errors::from_vec(errs) {
            Some(e) => Err(e),
            None => Ok(c),
        }
    }

    /// Decodes as far as possible: the config with defaults where fields failed, and the
    /// decode errors. Fails outright only on syntax and version errors.
    fn decode_partial(text: &str, env: &(impl Env + ?Sized)) -> Result<(Self, Vec<Error>), Errors> {
        // Credentials are taken from the text before expansion so that a `$` in a
        // password or secret is literal (upstream fix #102). If the raw text does not
        // parse (a JSON `$VAR` outside quotes), the expanded credentials are used.
        let raw_creds = parse_value(text).ok().and_then(|v| decode::credentials(&v));
        let expanded = expand(text, &WithPortDefault(env));
        let value = parse_value(&expanded)?;
        let (mut c, errs) = Self::from_value_partial(&value)?;
        if let Some(creds) = raw_creds {
            c.auth.credentials = creds;
        }
        Ok((c, errs))
    }

    /// Decodes an already parsed value tree (no env expansion, no validation).
    /// `v1alpha1` is converted to `v1`.
    pub fn from_value(value: &Value) -> Result<Self, Errors> {
        let (c, errs) = Self::from_value_partial(value)?;
        match Errors::from_vec(errs) {
            Some(e) => Err(e),
            None => Ok(c),
        }
    }

    fn from_value_partial(value: &Value) -> Result<(Self, Vec<Error>), Errors> {
        let version = decode::version(value);
        if version != defaults::API_VERSION && version != defaults::API_VERSION_V1ALPHA1 {
            return Err(Error::UnsupportedVersion(version).into());
        }
        let mut errs = Vec::new();
        let mut c = decode::config(value, &mut errs);
        // v1alpha1 shares the v1 shapes; its extra fields (`min_relay_port`,
        // `max_relay_port`) are unknown keys here and so dropped, as upstream does.
        c.version = defaults::API_VERSION.to_string();
        Ok((c, errs))
    }
}

impl std::str::FromStr for StunnerConfig {
    type Err = Errors;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_str_with_env(s, &ProcessEnv)
    }
}

impl<'de> serde::Deserialize<'de> for StunnerConfig {
    /// Decodes leniently (case-insensitive keys, unknown keys ignored) and validates; no
    /// env expansion.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let mut c = Self::from_value(&v).map_err(serde::de::Error::custom)?;
        c.validate().map_err(serde::de::Error::custom)?;
        Ok(c)
    }
}

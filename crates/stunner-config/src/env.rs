//! Environment expansion of config text, with the semantics of Go's `os.ExpandEnv`
//! that upstream applies to the whole config: `$NAME` and `${NAME}` are replaced (unset
//! means empty); `$` followed by nothing name-like stays literal; `${}` and an unclosed
//! `${` are dropped.

use crate::defaults;

/// Looks up an environment variable.
pub trait Env {
    /// The variable's value, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Upstream's `STUNNER_PORT` rule: when it is unset or not a number, the config sees
/// `STUNNER_PUBLIC_PORT` if that is a number, else 3478. Upstream writes this into the
/// process environment; we only answer lookups with it.
pub(crate) struct WithPortDefault<'a, E: Env + ?Sized>(pub(crate) &'a E);

impl<E: Env + ?Sized> Env for WithPortDefault<'_, E> {
    fn var(&self, name: &str) -> Option<String> {
        if name != defaults::ENV_PORT {
            return self.0.var(name);
        }
        let numeric = |v: &String| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        if let Some(p) = self.0.var(defaults::ENV_PORT).filter(numeric) {
            return Some(p);
        }
        let public = self
            .0
            .var(defaults::ENV_PUBLIC_PORT)
            .and_then(|p| p.trim().parse::<i64>().ok())
            .unwrap_or(i64::from(defaults::PORT));
        Some(public.to_string())
    }
}

/// Expands `$NAME` and `${NAME}` in `text`.
pub fn expand(text: &str, env: &(impl Env + ?Sized)) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] != b'$' || i + 1 >= b.len() {
            i += 1;
            continue;
        }
        out.push_str(&text[lit..i]);
        let (name, consumed) = shell_name(&text[i + 1..]);
        match (name, consumed) {
            (None, 0) => out.push('$'),
            (None, _) => {}
            (Some(n), _) => out.push_str(&env.var(n).unwrap_or_default()),
        }
        i += 1 + consumed;
        lit = i;
        if consumed == 0 {
            // Leave the character after a literal `$` to the scan.
            continue;
        }
    }
    out.push_str(&text[lit..]);
    out
}

fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// The variable name at the start of `s` (which follows a `$`) and how many bytes it
/// takes. `(None, 0)`: no name, the `$` is literal. `(None, n)`: bad syntax, drop `n`.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (None, 2),
            Some(end) => (Some(&s[1..=end]), end + 2),
            None => (None, 1),
        };
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let n = b.iter().take_while(|c| is_name_char(**c)).count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "STUNNER_ADDR" => Some("10.0.0.1".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_go() {
        let e = &env;
        assert_eq!(expand("x $A y", e), "x alpha y");
        assert_eq!(expand("x ${A}y", e), "x alphay");
        assert_eq!(expand("$STUNNER_ADDR:1", e), "10.0.0.1:1");
        assert_eq!(expand("$UNSET.", e), ".");
        assert_eq!(expand("cost: 5$", e), "cost: 5$");
        assert_eq!(expand("a $ b", e), "a $ b");
        assert_eq!(expand("a ${} b", e), "a  b");
        assert_eq!(expand("a ${A", e), "a A");
        assert_eq!(expand("$$", e), "");
        assert_eq!(expand("€$A€", e), "€alpha€");
        assert_eq!(expand("$1x", e), "x");
        assert_eq!(expand("$-", e), "");
    }

    #[test]
    fn stunner_port_defaults() {
        let none = |_: &str| None;
        assert_eq!(
            WithPortDefault(&none).var("STUNNER_PORT").as_deref(),
            Some("3478")
        );
        let public = |n: &str| (n == "STUNNER_PUBLIC_PORT").then(|| "30000".to_string());
        assert_eq!(
            WithPortDefault(&public).var("STUNNER_PORT").as_deref(),
            Some("30000")
        );
        let bad = |n: &str| (n == "STUNNER_PORT").then(|| "x1".to_string());
        assert_eq!(
            WithPortDefault(&bad).var("STUNNER_PORT").as_deref(),
            Some("3478")
        );
        let good = |n: &str| (n == "STUNNER_PORT").then(|| "443".to_string());
        assert_eq!(
            WithPortDefault(&good).var("STUNNER_PORT").as_deref(),
            Some("443")
        );
    }
}

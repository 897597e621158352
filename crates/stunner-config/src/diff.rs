//! What a new config changes against the running one, per object.
//!
//! stunnerd applies a config by this diff: only a listener's port or protocol needs its
//! sockets reopened ([`Change::Restart`]); everything else (credentials, realm, routes,
//! clusters, addresses, certificates, admin endpoints) is applied in place without
//! dropping allocations.

use crate::stunner::StunnerConfig;

/// The change to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Identical.
    Unchanged,
    /// New in the new config.
    Added,
    /// Gone from the new config.
    Removed,
    /// Changed; can be applied to the running object.
    InPlace,
    /// Changed so that the object's sockets must be reopened.
    Restart,
}

/// The change to one named listener or cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedChange {
    /// The object's name.
    pub name: String,
    /// What happens to it.
    pub change: Change,
}

/// The changes between two configs. Both should be validated, so that defaults and
/// order are normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    /// The `admin` section (never a restart: the admin server rebinds by itself).
    pub admin: Change,
    /// The `auth` section (always in place).
    pub auth: Change,
    /// Listeners, in the new config's order, then the removed ones.
    pub listeners: Vec<NamedChange>,
    /// Clusters, in the new config's order, then the removed ones.
    pub clusters: Vec<NamedChange>,
}

impl ConfigDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.admin == Change::Unchanged
            && self.auth == Change::Unchanged
            && self
                .listeners
                .iter()
                .chain(&self.clusters)
                .all(|c| c.change == Change::Unchanged)
    }

    /// The listeners whose sockets must be reopened.
    pub fn restarts(&self) -> impl Iterator<Item = &str> {
        self.listeners
            .iter()
            .filter(|c| c.change == Change::Restart)
            .map(|c| c.name.as_str())
    }
}

fn in_place<T: PartialEq>(old: &T, new: &T) -> Change {
    if old == new {
        Change::Unchanged
    } else {
        Change::InPlace
    }
}

fn named<T>(
    old: &[T],
    new: &[T],
    name: fn(&T) -> &str,
    change: impl Fn(&T, &T) -> Change,
) -> Vec<NamedChange> {
    let mut out: Vec<NamedChange> = new
        .iter()
        .map(|n| NamedChange {
            name: name(n).to_string(),
            change: old
                .iter()
                .find(|o| name(o) == name(n))
                .map_or(Change::Added, |o| change(o, n)),
        })
        .collect();
    out.extend(
        old.iter()
            .filter(|o| !new.iter().any(|n| name(n) == name(o)))
            .map(|o| NamedChange {
                name: name(o).to_string(),
                change: Change::Removed,
            }),
    );
    out
}

/// Compares two configs.
pub fn diff(old: &StunnerConfig, new: &StunnerConfig) -> ConfigDiff {
    ConfigDiff {
        admin: in_place(&old.admin, &new.admin),
        auth: in_place(&old.auth, &new.auth),
        listeners: named(
            &old.listeners,
            &new.listeners,
            |l| &l.name,
            |o, n| {
                if o.port != n.port || o.protocol != n.protocol {
                    Change::Restart
                } else {
                    in_place(o, n)
                }
            },
        ),
        clusters: named(&old.clusters, &new.clusters, |c| &c.name, in_place),
    }
}

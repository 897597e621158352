//! Status conditions. A condition keeps its `lastTransitionTime` while its status stays
//! the same, so re-rendering an unchanged World writes an identical status (no-op).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Builds conditions for one object against its previous conditions.
pub(crate) struct Conditions<'a> {
    prev: &'a [Condition],
    generation: Option<i64>,
    now: &'a Time,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    pub(crate) fn new(prev: &'a [Condition], generation: Option<i64>, now: &'a Time) -> Self {
        Self {
            prev,
            generation,
            now,
            out: Vec::new(),
        }
    }

    /// Adds (or replaces) a condition.
    pub(crate) fn set(
        &mut self,
        type_: &str,
        ok: Option<bool>,
        reason: &str,
        message: impl Into<String>,
    ) {
        let status = match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        };
        let last = self
            .prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| self.now.clone(), |c| c.last_transition_time.clone());
        self.out.retain(|c| c.type_ != type_);
        self.out.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time: last,
        });
    }

    pub(crate) fn finish(self) -> Vec<Condition> {
        self.out
    }
}

/// Shorthand for `Conditions::set(type, Some(true), …)` and friends.
pub(crate) fn yes() -> Option<bool> {
    Some(true)
}

/// A `False` condition.
pub(crate) fn no() -> Option<bool> {
    Some(false)
}

//! Bounded staleness for renders: the first World change after a render opens a window
//! of `throttle`; changes inside it join that render instead of moving it. A debounce
//! that restarts on every event never fires under steady EndpointSlice churn, so the
//! window is fixed at its first change.

use std::time::Duration;

use tokio::time::Instant;

/// When the next render is due.
#[derive(Debug, Clone)]
pub struct Throttle {
    window: Duration,
    due: Option<Instant>,
}

impl Throttle {
    /// Renders at most `window` after the first unrendered change.
    pub fn new(window: Duration) -> Self {
        Self { window, due: None }
    }

    /// A change arrived at `now`: opens the window unless one is open.
    pub fn changed(&mut self, now: Instant) {
        if self.due.is_none() {
            self.due = Some(now + self.window);
        }
    }

    /// The deadline of the open window, if any change is unrendered.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Everything so far is rendered.
    pub fn rendered(&mut self) {
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_changes_do_not_move_the_deadline() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_millis(250));
        assert_eq!(t.due(), None);
        t.changed(t0);
        for i in 1..100 {
            t.changed(t0 + Duration::from_millis(i * 10));
        }
        assert_eq!(t.due(), Some(t0 + Duration::from_millis(250)));
        t.rendered();
        assert_eq!(t.due(), None);
        t.changed(t0 + Duration::from_secs(1));
        assert_eq!(t.due(), Some(t0 + Duration::from_millis(1250)));
    }
}

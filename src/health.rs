//! Whether `slawatch run` is ready to answer, and if not, why: what `/readyz` says.
//!
//! The service loops set it (state restored, partitions assigned, input flowing); the API only
//! reads it. Never ready by default: a process that has not said so is still starting.

use std::sync::Mutex;

/// Ready, or the reason it is not (`waiting for partition assignment`, …).
#[derive(Debug)]
pub struct Readiness {
    not_ready: Mutex<Option<String>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new("starting")
    }
}

impl Readiness {
    /// Not ready, for `reason`.
    pub fn new(reason: &str) -> Readiness {
        Readiness {
            not_ready: Mutex::new(Some(reason.to_owned())),
        }
    }

    /// Ready to answer.
    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    /// Not ready, for `reason` (what it waits for, in words).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// Ready when `waiting_for` is `None`; else not ready for that reason. For loops that
    /// recompute readiness every round.
    pub fn set(&self, waiting_for: Option<&str>) {
        let mut g = self.lock();
        match waiting_for {
            None => *g = None,
            Some(r) if g.as_deref() != Some(r) => *g = Some(r.to_owned()),
            Some(_) => {}
        }
    }

    /// `Ok` when ready, else why not.
    pub fn status(&self) -> Result<(), String> {
        match &*self.lock() {
            None => Ok(()),
            Some(r) => Err(r.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.not_ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_told_and_keeps_the_reason() {
        let r = Readiness::default();
        assert_eq!(r.status(), Err("starting".into()));
        r.set(Some("waiting for partition assignment"));
        assert_eq!(r.status(), Err("waiting for partition assignment".into()));
        r.set(None);
        assert_eq!(r.status(), Ok(()));
        r.set_not_ready("restoring partition 3");
        assert_eq!(r.status(), Err("restoring partition 3".into()));
        r.set_ready();
        assert_eq!(r.status(), Ok(()));
    }
}

//! A request-rate limit per client address: a token bucket each, refilled at `per_second` up to
//! a burst of twice that. Time is an argument, so the arithmetic is tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many client addresses are remembered; beyond it, full buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimit {
    /// `per_second` requests a second per client address, bursts of twice that; 0 = no limit.
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `client` at `now`; when its bucket is empty, how long until the
    /// next one is allowed.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        let refilled = (*tokens
            + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_the_rate_and_others_are_not_affected() {
        let limit = RateLimit::new(10);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(limit.check(a, t0).is_ok());
        }
        let wait = limit.check(a, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(
            limit.check(b, t0).is_ok(),
            "another client has its own bucket"
        );
        // 0.25 s later: 2.5 tokens back, so two requests pass and the third waits 0.05 s.
        let t1 = t0 + Duration::from_millis(250);
        assert!(limit.check(a, t1).is_ok());
        assert!(limit.check(a, t1).is_ok());
        let wait = limit.check(a, t1).unwrap_err();
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn zero_means_no_limit() {
        let limit = RateLimit::new(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(limit.check("::1".parse().unwrap(), t0).is_ok());
        }
    }
}

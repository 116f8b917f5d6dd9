//! `slawatch simulate --otel json|proto --otlp-endpoint URL`: posts span requests to an
//! OTLP/HTTP receiver as an OpenTelemetry exporter does — `POST` with the encoding's content
//! type, retried on `429`/`503` (and on a connection that fails) after the server's
//! `Retry-After`, else with exponential backoff; any other answer but `2xx` stops with an
//! error naming the status and the body.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::otel::Encoding;

/// Attempts per request before giving up.
pub const MAX_ATTEMPTS: u32 = 12;

/// The first backoff, doubled per failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured: a server asking for more is waited for this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Retry after this long.
    Retry(Duration),
    Fail(String),
}

/// The decision after attempt `attempt` (0-based) got `status` (`None`: no answer, the
/// connection failed) with a `Retry-After` header value. Pure, so the tests need no server.
pub fn next(attempt: u32, status: Option<u16>, retry_after: Option<&str>) -> Next {
    let backoff = FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    match status {
        Some(s) if (200..300).contains(&s) => Next::Done,
        Some(429 | 503) | None if attempt + 1 < MAX_ATTEMPTS => {
            // Retry-After in seconds (the HTTP-date form is rare for OTLP; backoff then).
            let asked = retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            Next::Retry(asked.unwrap_or(backoff))
        }
        Some(429 | 503) | None => {
            Next::Fail(format!("still refused after {MAX_ATTEMPTS} attempts"))
        }
        Some(s) => Next::Fail(format!("answered {s}")),
    }
}

/// `simulate --otel FORMAT --otlp-endpoint URL`: the simulated sessions, `--otlp-batch` per
/// request, posted to `url`.
pub fn simulate_to(
    url: &str,
    format: crate::simulate::OtelFormat,
    args: &crate::simulate::SimulateArgs,
) -> Result<std::process::ExitCode> {
    let mut sim = crate::simulate::Simulator::new(args.to_config()?)?;
    let batch = usize::try_from(args.otlp_batch).unwrap_or(usize::MAX);
    let requests = crate::simulate::span_batches(&mut sim, format.encoding(), batch);
    export(url, format.encoding(), requests)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Posts every request to `url`, one after the other; the number of requests posted.
pub fn export(
    url: &str,
    encoding: Encoding,
    requests: impl Iterator<Item = Vec<u8>>,
) -> Result<u64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let content_type = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    let mut posted = 0;
    for body in requests {
        let mut attempt = 0;
        loop {
            let answer = agent
                .post(url)
                .header("Content-Type", content_type)
                .send(&body[..]);
            let (status, retry_after, detail) = match answer {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = match (200..300).contains(&status) {
                        true => String::new(),
                        false => resp.body_mut().read_to_string().unwrap_or_default(),
                    };
                    (Some(status), retry_after, text)
                }
                Err(e) => (None, None, e.to_string()),
            };
            match next(attempt, status, retry_after.as_deref()) {
                Next::Done => break,
                Next::Retry(wait) => {
                    tracing::debug!(?status, ?wait, "OTLP receiver busy: retrying");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Next::Fail(why) => {
                    bail!("posting spans to {url}: {why}: {detail}")
                }
            }
        }
        posted += 1;
    }
    Ok(posted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_done() {
        assert_eq!(next(0, Some(200), None), Next::Done);
        assert_eq!(next(3, Some(204), Some("9")), Next::Done);
    }

    #[test]
    fn busy_answers_are_retried_after_the_servers_retry_after() {
        assert_eq!(
            next(0, Some(503), Some("1")),
            Next::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            next(0, Some(429), Some(" 7 ")),
            Next::Retry(Duration::from_secs(7))
        );
        // Capped: a server cannot park the exporter for an hour.
        assert_eq!(
            next(0, Some(503), Some("3600")),
            Next::Retry(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn without_retry_after_the_backoff_doubles_up_to_a_cap() {
        let waits: Vec<Next> = (0..7).map(|a| next(a, Some(503), None)).collect();
        let ms = |m| Next::Retry(Duration::from_millis(m));
        assert_eq!(
            waits,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000)
            ]
        );
        // A connection that fails is retried the same way; an HTTP-date falls back to it.
        assert_eq!(next(1, None, None), ms(200));
        assert_eq!(
            next(0, Some(503), Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            ms(100)
        );
    }

    #[test]
    fn other_answers_and_the_last_attempt_fail() {
        assert_eq!(next(0, Some(400), None), Next::Fail("answered 400".into()));
        assert!(matches!(
            next(MAX_ATTEMPTS - 1, Some(503), Some("1")),
            Next::Fail(_)
        ));
    }
}

//! When a certificate is renewed, and how long a failed order waits.

use std::time::Duration;

/// Longest wait after failed orders.
pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// The wait after the first failure (doubling after each further one).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);

/// When (Unix seconds) a certificate valid from `not_before` to `not_after`
/// is renewed: `renew_before` ahead of its end, or when a third of its
/// lifetime is left if that comes first (short-lived certificates).
pub fn renew_at(not_before: i64, not_after: i64, renew_before: Duration) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let lead = (renew_before.as_secs() as i64).min(lifetime / 3);
    not_after - lead
}

/// The wait after `failures` failed orders in a row (1 min doubling up to 1 day).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_leads_by_renew_before_or_a_third() {
        let day = 86_400;
        // 90 days, renew_before 30 days: at day 60.
        assert_eq!(
            renew_at(0, 90 * day, Duration::from_secs(30 * day as u64)),
            60 * day
        );
        // 6 days (short-lived): a third of the lifetime, at day 4.
        assert_eq!(
            renew_at(0, 6 * day, Duration::from_secs(30 * day as u64)),
            4 * day
        );
    }

    #[test]
    fn backoff_doubles_to_a_day() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(4), Duration::from_secs(480));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}

//! Target stickiness of a group: `lb_cookie` (edgelb's `EDGELB` cookie on every
//! response) and `app_cookie` (`EDGELBAPP` when the target sets its own cookie).

use super::target::{GroupRuntime, Target};
use crate::balance::cookie::{CookieKeys, find_cookie};
use crate::config::Stickiness;
use http::{HeaderMap, HeaderValue, header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The load balancer's own stickiness cookie.
pub const LB_COOKIE: &str = "EDGELB";
/// The cookie that follows an application's cookie.
pub const APP_COOKIE: &str = "EDGELBAPP";

/// A group's target stickiness, compiled.
pub struct TargetStickiness {
    /// `None` = `lb_cookie`; `Some(name)` = `app_cookie` following `name`.
    app_cookie: Option<String>,
    duration: Duration,
    attributes_http: String,
    attributes_https: String,
}

/// What a request's stickiness cookie says.
pub enum Bound {
    /// No cookie.
    None,
    /// A valid cookie naming a target that can take the request.
    Target(usize),
    /// A cookie that did not open (forged, expired, other key or group).
    Rejected,
    /// A valid cookie whose target is gone, unhealthy, draining or weight 0.
    Unavailable,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TargetStickiness {
    /// Compiles a group's validated stickiness.
    pub fn new(s: &Stickiness) -> Self {
        let (app_cookie, duration) = match s {
            Stickiness::LbCookie { duration } => (None, *duration),
            Stickiness::AppCookie { cookie, duration } => (Some(cookie.clone()), *duration),
        };
        TargetStickiness {
            app_cookie,
            duration,
            attributes_http: crate::route::action::cookie_attributes(duration, false),
            attributes_https: crate::route::action::cookie_attributes(duration, true),
        }
    }

    fn name(&self) -> &'static str {
        if self.app_cookie.is_some() {
            APP_COOKIE
        } else {
            LB_COOKIE
        }
    }

    /// The target the request's cookie binds it to. Opens at most one cookie;
    /// no cookie, no allocation.
    pub fn bound(&self, group: &GroupRuntime, headers: &HeaderMap, keys: &CookieKeys) -> Bound {
        let Some(value) = find_cookie(headers, self.name()) else {
            return Bound::None;
        };
        let Some(address) = keys.open(self.name(), group.name.as_bytes(), value, unix_now()) else {
            return Bound::Rejected;
        };
        match group
            .targets
            .iter()
            .position(|t| t.address.as_bytes() == address.as_slice())
        {
            Some(i) if group.can_take(i) => Bound::Target(i),
            _ => Bound::Unavailable,
        }
    }

    /// The `Set-Cookie` for a response from `target`, if one is due: every
    /// response for `lb_cookie` (the duration slides), responses that set the
    /// application's cookie for `app_cookie`, and any response after the
    /// client's binding had to change.
    pub fn set_cookie(
        &self,
        group: &GroupRuntime,
        target: &Target,
        response: &HeaderMap,
        rebound: bool,
        https: bool,
        keys: &CookieKeys,
    ) -> Option<HeaderValue> {
        if let Some(app) = &self.app_cookie {
            let sets_app_cookie = response.get_all(header::SET_COOKIE).iter().any(|v| {
                let v = v.as_bytes().trim_ascii_start();
                v.starts_with(app.as_bytes()) && v.get(app.len()) == Some(&b'=')
            });
            if !sets_app_cookie && !rebound {
                return None;
            }
        }
        let sealed = keys.seal(
            self.name(),
            group.name.as_bytes(),
            target.address.as_bytes(),
            unix_now() + self.duration.as_secs(),
        );
        let attributes = if https {
            &self.attributes_https
        } else {
            &self.attributes_http
        };
        HeaderValue::from_str(&format!("{}={sealed}{attributes}", self.name())).ok()
    }
}

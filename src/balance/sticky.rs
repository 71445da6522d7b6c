//! Stickiness, all of it: the cookie that keeps a client on one target of a
//! group (`lb_cookie`: edgelb's `EDGELB` cookie on every response;
//! `app_cookie`: `EDGELBAPP` when the target sets its own cookie), and the one
//! that keeps it on one group of a weighted forward (`EDGELBTG`). Each is
//! made by its constructor from the validated config and used through its
//! methods; the cookies are sealed by [`super::cookie::CookieKeys`].

use super::cookie::{CookieKeys, find_cookie};
use crate::config::Stickiness;
use http::{HeaderMap, HeaderValue, header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The load balancer's own stickiness cookie.
pub const LB_COOKIE: &str = "EDGELB";
/// The cookie that follows an application's cookie.
pub const APP_COOKIE: &str = "EDGELBAPP";
/// The cookie that keeps a client on the target group it was first sent to.
pub const GROUP_COOKIE: &str = "EDGELBTG";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `; Path=/; Max-Age=N; HttpOnly`, plus `; Secure; SameSite=None` on https.
fn cookie_attributes(duration: Duration, https: bool) -> String {
    let mut a = format!("; Path=/; Max-Age={}; HttpOnly", duration.as_secs());
    if https {
        a.push_str("; Secure; SameSite=None");
    }
    a
}

/// A group's target stickiness, compiled.
pub struct TargetStickiness {
    /// `None` = `lb_cookie`; `Some(name)` = `app_cookie` following `name`.
    app_cookie: Option<String>,
    duration: Duration,
    attributes_http: String,
    attributes_https: String,
}

/// What a request's stickiness cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            attributes_http: cookie_attributes(duration, false),
            attributes_https: cookie_attributes(duration, true),
        }
    }

    fn name(&self) -> &'static str {
        if self.app_cookie.is_some() {
            APP_COOKIE
        } else {
            LB_COOKIE
        }
    }

    /// The target of group `group` the request's cookie binds it to;
    /// `available(address)` is the index of the group's target at that
    /// address when it can take the request now. Opens at most one cookie;
    /// no cookie, no allocation.
    pub fn bound(
        &self,
        group: &str,
        headers: &HeaderMap,
        keys: &CookieKeys,
        available: impl Fn(&[u8]) -> Option<usize>,
    ) -> Bound {
        let Some(value) = find_cookie(headers, self.name()) else {
            return Bound::None;
        };
        let Some(address) = keys.open(self.name(), group.as_bytes(), value, unix_now()) else {
            return Bound::Rejected;
        };
        match available(&address) {
            Some(i) => Bound::Target(i),
            None => Bound::Unavailable,
        }
    }

    /// The `Set-Cookie` for a response of group `group` from the target at
    /// `address`, if one is due: every response for `lb_cookie` (the
    /// duration slides), responses that set the application's cookie for
    /// `app_cookie`, and any response after the client's binding had to
    /// change (`rebound`).
    pub fn set_cookie(
        &self,
        group: &str,
        address: &str,
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
            group.as_bytes(),
            address.as_bytes(),
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

/// Group stickiness of a weighted forward, compiled.
pub struct GroupStickiness {
    duration: Duration,
    /// What the cookie is bound to (the listener and rule), so it cannot be
    /// replayed onto another forward.
    scope: Box<[u8]>,
    /// `; Path=/; Max-Age=…; HttpOnly[; Secure; SameSite=None]`
    attributes: String,
}

impl GroupStickiness {
    /// Stickiness for `duration` of the forward named by `scope`, on a
    /// listener that is `https` or not.
    pub fn new(duration: Duration, scope: &str, https: bool) -> Self {
        GroupStickiness {
            duration,
            scope: scope.as_bytes().into(),
            attributes: cookie_attributes(duration, https),
        }
    }

    /// The group name the request's `EDGELBTG` cookie holds, if it opens.
    pub fn kept(&self, headers: &HeaderMap, keys: &CookieKeys) -> Option<Vec<u8>> {
        let value = find_cookie(headers, GROUP_COOKIE)?;
        keys.open(GROUP_COOKIE, &self.scope, value, unix_now())
    }

    /// The `Set-Cookie` that keeps the client on group `group` (the duration
    /// slides with every response).
    pub fn set_cookie(&self, group: &str, keys: &CookieKeys) -> Option<HeaderValue> {
        let sealed = keys.seal(
            GROUP_COOKIE,
            &self.scope,
            group.as_bytes(),
            unix_now() + self.duration.as_secs(),
        );
        HeaderValue::from_str(&format!("{GROUP_COOKIE}={sealed}{}", self.attributes)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CookieKeys {
        CookieKeys::from_secrets(&[vec![7u8; 32]])
    }

    fn request_with(cookie: &HeaderValue) -> HeaderMap {
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        h
    }

    #[test]
    fn a_target_cookie_binds_to_its_group_and_address() {
        let keys = keys();
        let sticky = TargetStickiness::new(&Stickiness::LbCookie {
            duration: Duration::from_secs(60),
        });
        let set = sticky
            .set_cookie("web", "10.0.0.2:80", &HeaderMap::new(), false, true, &keys)
            .unwrap();
        let s = set.to_str().unwrap();
        assert!(s.starts_with("EDGELB="), "{s}");
        assert!(s.ends_with("; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=None"));
        let req = request_with(&set);
        let at = |a: &[u8]| (a == b"10.0.0.2:80").then_some(1);
        assert_eq!(sticky.bound("web", &req, &keys, at), Bound::Target(1));
        assert_eq!(
            sticky.bound("web", &req, &keys, |_| None),
            Bound::Unavailable
        );
        assert_eq!(sticky.bound("api", &req, &keys, at), Bound::Rejected);
        assert_eq!(
            sticky.bound("web", &HeaderMap::new(), &keys, at),
            Bound::None
        );
    }

    #[test]
    fn an_app_cookie_follows_the_applications() {
        let keys = keys();
        let sticky = TargetStickiness::new(&Stickiness::AppCookie {
            cookie: "SID".into(),
            duration: Duration::from_secs(60),
        });
        let quiet = HeaderMap::new();
        assert!(
            sticky
                .set_cookie("g", "a", &quiet, false, false, &keys)
                .is_none()
        );
        let mut sets = HeaderMap::new();
        sets.insert(header::SET_COOKIE, HeaderValue::from_static("SID=1"));
        let set = sticky
            .set_cookie("g", "a", &sets, false, false, &keys)
            .unwrap();
        assert!(set.to_str().unwrap().starts_with("EDGELBAPP="));
        assert!(
            sticky
                .set_cookie("g", "a", &quiet, true, false, &keys)
                .is_some()
        );
    }

    #[test]
    fn a_group_cookie_opens_only_in_its_scope() {
        let keys = keys();
        let sticky = GroupStickiness::new(Duration::from_secs(30), "l/rule-1", false);
        let set = sticky.set_cookie("blue", &keys).unwrap();
        assert!(set.to_str().unwrap().starts_with("EDGELBTG="));
        let req = request_with(&set);
        assert_eq!(sticky.kept(&req, &keys).as_deref(), Some(&b"blue"[..]));
        let other = GroupStickiness::new(Duration::from_secs(30), "l/rule-2", false);
        assert_eq!(other.kept(&req, &keys), None);
    }
}

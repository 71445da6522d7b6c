//! Rule conditions compiled for matching: a rule matches when every condition
//! it names matches; within one condition any listed value may match.

use super::pattern::Pattern;
use super::request::RequestView;
use crate::config;
use http::{HeaderName, Method};
use ipnet::IpNet;

/// One rule's conditions, ready to test against a request.
#[derive(Debug)]
pub struct Conditions {
    method: Option<Vec<Method>>,
    source_ip: Option<Vec<IpNet>>,
    pub(super) host: Option<Vec<Pattern>>,
    pub(super) path: Option<Vec<Pattern>>,
    headers: Vec<(HeaderName, Vec<Pattern>)>,
    query: Option<Vec<(Box<[u8]>, Pattern)>>,
}

impl Conditions {
    /// Compiles validated conditions.
    pub fn compile(c: &config::Conditions) -> Self {
        let patterns = |list: &Option<Vec<String>>, ignore_case: bool| {
            list.as_ref()
                .map(|l| l.iter().map(|p| Pattern::new(p, ignore_case)).collect())
        };
        Conditions {
            method: c.method.as_ref().map(|l| {
                l.iter()
                    .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                    .collect()
            }),
            source_ip: c.source_ip.clone(),
            host: patterns(&c.host, true),
            path: patterns(&c.path, false),
            headers: c
                .headers
                .iter()
                .filter_map(|(name, values)| {
                    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                    Some((name, values.iter().map(|v| Pattern::new(v, true)).collect()))
                })
                .collect(),
            query: c.query.as_ref().map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.as_bytes().into(), Pattern::new(v, true)))
                    .collect()
            }),
        }
    }

    /// Whether the request meets every condition (cheapest checks first).
    pub fn matches(&self, r: &RequestView) -> bool {
        if let Some(methods) = &self.method
            && !methods.iter().any(|m| m == r.method)
        {
            return false;
        }
        if let Some(nets) = &self.source_ip
            && !nets.iter().any(|n| n.contains(&r.source_ip))
        {
            return false;
        }
        if let Some(hosts) = &self.host
            && !hosts.iter().any(|p| p.matches(r.host))
        {
            return false;
        }
        if let Some(paths) = &self.path
            && !paths.iter().any(|p| p.matches(&r.path))
        {
            return false;
        }
        for (name, patterns) in &self.headers {
            let any = r
                .headers
                .any_value(name, |v| patterns.iter().any(|p| p.matches(v)));
            if !any {
                return false;
            }
        }
        if let Some(pairs) = &self.query
            && !query_matches(r.query, pairs)
        {
            return false;
        }
        true
    }
}

/// Any `key=value` pair of the query string that one of `pairs` accepts.
fn query_matches(query: &[u8], pairs: &[(Box<[u8]>, Pattern)]) -> bool {
    query.split(|b| *b == b'&').any(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        pairs
            .iter()
            .any(|(key, pattern)| **key == *k && pattern.matches(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::request::RequestView;
    use std::net::IpAddr;

    fn cond(f: impl FnOnce(&mut config::Conditions)) -> Conditions {
        let mut c = config::Conditions::default();
        f(&mut c);
        Conditions::compile(&c)
    }

    fn check(c: &Conditions, req: http::Request<()>, ip: &str) -> bool {
        let (parts, _) = req.into_parts();
        c.matches(&RequestView::new(&parts, ip.parse::<IpAddr>().unwrap()))
    }

    fn get(uri: &str, host: &str) -> http::Request<()> {
        http::Request::get(uri)
            .header("host", host)
            .body(())
            .unwrap()
    }

    #[test]
    fn host_is_case_insensitive_and_without_port() {
        let c = cond(|c| c.host = Some(vec!["api.example.com".into(), "*.api.example.com".into()]));
        assert!(check(&c, get("/", "API.Example.com:8443"), "10.0.0.1"));
        assert!(check(&c, get("/", "v2.api.example.com"), "10.0.0.1"));
        assert!(!check(&c, get("/", "example.com"), "10.0.0.1"));
        assert!(!check(
            &c,
            http::Request::get("/").body(()).unwrap(),
            "10.0.0.1"
        ));
    }

    #[test]
    fn path_is_case_sensitive_raw_and_dot_normalised() {
        let c = cond(|c| c.path = Some(vec!["/admin/*".into()]));
        assert!(check(&c, get("/admin/x?y=1", "h"), "10.0.0.1"));
        assert!(!check(&c, get("/Admin/x", "h"), "10.0.0.1"));
        assert!(check(&c, get("/public/../admin/x", "h"), "10.0.0.1"));
        // No percent-decoding: %61 is not "a".
        assert!(!check(&c, get("/%61dmin/x", "h"), "10.0.0.1"));
        let root = cond(|c| c.path = Some(vec!["/".into()]));
        assert!(check(&root, get("/", "h"), "10.0.0.1"));
        assert!(check(&root, get("http://h", "h"), "10.0.0.1"));
    }

    #[test]
    fn method_headers_query() {
        let c = cond(|c| c.method = Some(vec!["GET".into(), "HEAD".into()]));
        assert!(check(&c, get("/", "h"), "10.0.0.1"));
        assert!(!check(
            &c,
            http::Request::post("/").body(()).unwrap(),
            "10.0.0.1"
        ));

        let c = cond(|c| c.headers = vec![("x-canary".into(), vec!["1".into(), "y*".into()])]);
        let with = |v: &str| {
            http::Request::get("/")
                .header("X-Canary", v)
                .body(())
                .unwrap()
        };
        assert!(check(&c, with("1"), "10.0.0.1"));
        assert!(check(&c, with("YES"), "10.0.0.1"));
        assert!(!check(&c, with("0"), "10.0.0.1"));
        assert!(!check(&c, get("/", "h"), "10.0.0.1"));

        let c =
            cond(|c| c.query = Some(vec![("v".into(), "2".into()), ("beta".into(), "on".into())]));
        assert!(check(&c, get("/?a=1&v=2", "h"), "10.0.0.1"));
        assert!(check(&c, get("/?beta=ON", "h"), "10.0.0.1"));
        assert!(!check(&c, get("/?v=3", "h"), "10.0.0.1"));
        assert!(!check(&c, get("/?V=2", "h"), "10.0.0.1"));
        assert!(!check(&c, get("/", "h"), "10.0.0.1"));
    }

    #[test]
    fn source_ip_v4_v6_and_mapped() {
        let c = cond(|c| {
            c.source_ip = Some(vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ])
        });
        assert!(check(&c, get("/", "h"), "10.1.2.3"));
        assert!(check(&c, get("/", "h"), "::ffff:10.1.2.3"));
        assert!(check(&c, get("/", "h"), "2001:db8::7"));
        assert!(!check(&c, get("/", "h"), "192.168.1.1"));
        assert!(!check(&c, get("/", "h"), "2001:db9::1"));
        // X-Forwarded-For is never looked at.
        let spoof = http::Request::get("/")
            .header("x-forwarded-for", "10.0.0.1")
            .body(())
            .unwrap();
        assert!(!check(&c, spoof, "192.168.1.1"));
    }

    #[test]
    fn all_named_conditions_must_match() {
        let c = cond(|c| {
            c.host = Some(vec!["a.example".into()]);
            c.path = Some(vec!["/x".into()]);
        });
        assert!(check(&c, get("/x", "a.example"), "10.0.0.1"));
        assert!(!check(&c, get("/y", "a.example"), "10.0.0.1"));
        assert!(!check(&c, get("/x", "b.example"), "10.0.0.1"));
    }
}

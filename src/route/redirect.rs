//! Redirect actions: a `Location` built from templates with the placeholders
//! `#{protocol}`, `#{host}`, `#{port}`, `#{path}` (without its leading `/`) and
//! `#{query}`. Parts left out keep the request's own.

use crate::config;
use http::HeaderValue;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Protocol,
    Host,
    Port,
    Path,
    Query,
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(text: &str) -> Self {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("#{") {
            let placeholder = [
                ("#{protocol}", Piece::Protocol),
                ("#{host}", Piece::Host),
                ("#{port}", Piece::Port),
                ("#{path}", Piece::Path),
                ("#{query}", Piece::Query),
            ]
            .into_iter()
            .find(|(p, _)| rest[start..].starts_with(p));
            match placeholder {
                Some((p, piece)) => {
                    if start > 0 {
                        pieces.push(Piece::Text(rest[..start].to_owned()));
                    }
                    pieces.push(piece);
                    rest = &rest[start + p.len()..];
                }
                None => {
                    pieces.push(Piece::Text(rest[..start + 2].to_owned()));
                    rest = &rest[start + 2..];
                }
            }
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Template(pieces)
    }

    fn render(&self, r: &RedirectSource, out: &mut Vec<u8>) {
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Protocol => out.extend_from_slice(r.protocol.as_bytes()),
                Piece::Host => out.extend_from_slice(r.host),
                Piece::Port => out.extend_from_slice(r.port.to_string().as_bytes()),
                Piece::Path => out.extend_from_slice(r.path.strip_prefix(b"/").unwrap_or(r.path)),
                Piece::Query => out.extend_from_slice(r.query),
            }
        }
    }
}

/// What a redirect takes from the request.
pub struct RedirectSource<'a> {
    /// `http` or `https` (the listener's).
    pub protocol: &'a str,
    /// Host without port, already checked by [`valid_host`].
    pub host: &'a [u8],
    pub port: u16,
    /// The path as received.
    pub path: &'a [u8],
    /// The query without `?`.
    pub query: &'a [u8],
}

/// Why a redirect could not be rendered (answered 400: the request's own parts
/// were unfit to build a URL from).
#[derive(Debug, PartialEq, Eq)]
pub struct BadRedirect(pub &'static str);

/// Longest `Location` a redirect renders (a request target is at most 8 KiB;
/// templates may repeat placeholders).
const MAX_LOCATION: usize = 32 * 1024;

/// Whether `b` may stand in a URL's path, query or fragment as it is
/// (RFC 3986 `pchar`, `/`, `?`, `#`, and `%` of an existing escape).
fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#%".contains(&b)
}

/// A compiled redirect action.
#[derive(Debug)]
pub struct RedirectAction {
    protocol: Template,
    host: Template,
    port: Template,
    path: Template,
    query: Template,
    pub status: http::StatusCode,
}

/// Whether `host` is a syntactically valid host name, IPv4 address or
/// bracketed IPv6 literal — the only hosts `#{host}` may carry.
pub fn valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    if host[0] == b'[' {
        return host.last() == Some(&b']')
            && std::str::from_utf8(&host[1..host.len() - 1])
                .is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
    }
    host.split(|b| *b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    })
}

impl RedirectAction {
    /// Compiles a validated redirect.
    pub fn compile(r: &config::Redirect) -> Self {
        let t = |part: &Option<String>, own: &str| Template::parse(part.as_deref().unwrap_or(own));
        RedirectAction {
            protocol: t(&r.protocol, "#{protocol}"),
            host: t(&r.host, "#{host}"),
            port: t(&r.port, "#{port}"),
            path: t(&r.path, "/#{path}"),
            query: t(&r.query, "#{query}"),
            status: http::StatusCode::from_u16(r.status)
                .unwrap_or(http::StatusCode::MOVED_PERMANENTLY),
        }
    }

    /// The absolute `Location` for a request. The default port of the scheme is
    /// left out, an empty query drops the `?`, and no part can smuggle a control
    /// character, a second header or a different authority into the URL.
    pub fn location(&self, source: &RedirectSource) -> Result<HeaderValue, BadRedirect> {
        if !valid_host(source.host) {
            return Err(BadRedirect("the request has no valid host to redirect to"));
        }
        let mut protocol = Vec::with_capacity(5);
        self.protocol.render(source, &mut protocol);
        let scheme = match &protocol[..] {
            b"http" => "http",
            b"https" => "https",
            _ => return Err(BadRedirect("redirect protocol is neither http nor https")),
        };
        let mut host = Vec::with_capacity(source.host.len());
        self.host.render(source, &mut host);
        if !valid_host(&host) {
            return Err(BadRedirect("redirect host is not a valid host"));
        }
        let mut port = Vec::with_capacity(5);
        self.port.render(source, &mut port);
        let port: u16 = std::str::from_utf8(&port)
            .ok()
            .and_then(|p| p.parse().ok())
            .filter(|p| *p > 0)
            .ok_or(BadRedirect("redirect port is not a port"))?;
        let mut url = Vec::with_capacity(64 + source.path.len() + source.query.len());
        url.extend_from_slice(scheme.as_bytes());
        url.extend_from_slice(b"://");
        url.extend_from_slice(&host);
        let default_port = if scheme == "https" { 443 } else { 80 };
        if port != default_port {
            url.push(b':');
            url.extend_from_slice(port.to_string().as_bytes());
        }
        let path_start = url.len();
        self.path.render(source, &mut url);
        if url.get(path_start) != Some(&b'/') || url.get(path_start + 1) == Some(&b'/') {
            // "//evil.example" would change the authority for some clients.
            return Err(BadRedirect("redirect path must start with a single '/'"));
        }
        let query_start = url.len() + 1;
        url.push(b'?');
        self.query.render(source, &mut url);
        if url.len() == query_start {
            url.pop();
        }
        if url.iter().any(|b| b.is_ascii_control() || *b == b' ') {
            return Err(BadRedirect("redirect target holds a control character"));
        }
        // Bytes that are no URL characters are percent-encoded: non-ASCII (a
        // path may carry them raw), `\\`, which browsers read as `/`
        // ("/\\evil.example" would change the authority), and the rest RFC 3986
        // does not allow in a path or query (`<`, `"`, `{`, ...).
        if !url[path_start..].iter().all(|b| is_url_char(*b)) {
            let mut encoded = Vec::with_capacity(url.len() + 16);
            encoded.extend_from_slice(&url[..path_start]);
            for &b in &url[path_start..] {
                if is_url_char(b) {
                    encoded.push(b);
                } else {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    encoded.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]);
                }
            }
            url = encoded;
        }
        if url.len() > MAX_LOCATION {
            return Err(BadRedirect("redirect target too long"));
        }
        HeaderValue::from_bytes(&url)
            .map_err(|_| BadRedirect("redirect target is not a valid header value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(f: impl FnOnce(&mut config::Redirect)) -> RedirectAction {
        let mut r = config::Redirect {
            protocol: None,
            host: None,
            port: None,
            path: None,
            query: None,
            status: 301,
        };
        f(&mut r);
        RedirectAction::compile(&r)
    }

    fn src<'a>(host: &'a str, path: &'a str, query: &'a str) -> RedirectSource<'a> {
        RedirectSource {
            protocol: "http",
            host: host.as_bytes(),
            port: 80,
            path: path.as_bytes(),
            query: query.as_bytes(),
        }
    }

    fn loc(r: &RedirectAction, s: &RedirectSource) -> String {
        r.location(s).unwrap().to_str().unwrap().to_owned()
    }

    #[test]
    fn http_to_https() {
        let r = redirect(|r| {
            r.protocol = Some("https".into());
            r.port = Some("443".into());
        });
        assert_eq!(
            loc(&r, &src("example.com", "/a/b", "x=1")),
            "https://example.com/a/b?x=1"
        );
        assert_eq!(
            loc(&r, &src("example.com", "/", "")),
            "https://example.com/"
        );
    }

    #[test]
    fn placeholders_and_literal_parts() {
        let r = redirect(|r| {
            r.host = Some("new.#{host}".into());
            r.path = Some("/new/#{path}".into());
            r.query = Some("from=#{protocol}&#{query}".into());
            r.port = Some("8080".into());
        });
        assert_eq!(
            loc(&r, &src("example.com", "/old/x", "q=1")),
            "http://new.example.com:8080/new/old/x?from=http&q=1"
        );
    }

    #[test]
    fn default_port_is_omitted_and_own_port_kept() {
        let r = redirect(|r| r.path = Some("/moved".into()));
        let mut s = src("example.com", "/x", "");
        assert_eq!(loc(&r, &s), "http://example.com/moved");
        s.port = 8080;
        assert_eq!(loc(&r, &s), "http://example.com:8080/moved");
    }

    #[test]
    fn hostile_hosts_are_refused() {
        let r = redirect(|r| r.path = Some("/moved".into()));
        for bad in [
            "evil.com/x",
            "a b",
            "a\r\nSet-Cookie: x=1",
            "",
            "user@evil.com",
            "[::1",
            "[nothost]",
        ] {
            assert!(r.location(&src(bad, "/", "")).is_err(), "{bad:?}");
        }
        assert_eq!(loc(&r, &src("[::1]", "/", "")), "http://[::1]/moved");
        assert_eq!(loc(&r, &src("10.0.0.1", "/", "")), "http://10.0.0.1/moved");
    }

    #[test]
    fn path_cannot_become_an_authority() {
        let r = redirect(|r| r.path = Some("/#{path}".into()));
        assert!(
            r.location(&src("example.com", "//evil.example/x", ""))
                .is_err()
        );
        assert_eq!(
            loc(&r, &src("example.com", "/\\evil.example/x", "")),
            "http://example.com/%5Cevil.example/x"
        );
    }

    #[test]
    fn raw_non_ascii_is_percent_encoded() {
        let r = redirect(|r| r.path = Some("/#{path}".into()));
        let s = RedirectSource {
            path: "/caf\u{e9}".as_bytes(),
            query: b"q=\xff",
            ..src("example.com", "/", "")
        };
        assert_eq!(loc(&r, &s), "http://example.com/caf%C3%A9?q=%FF");
        let s = RedirectSource {
            query: b"q=<x>\"|",
            ..src("example.com", "/a{b}", "")
        };
        assert_eq!(loc(&r, &s), "http://example.com/a%7Bb%7D?q=%3Cx%3E%22%7C");
    }

    #[test]
    fn unknown_placeholders_stay_text() {
        assert_eq!(
            Template::parse("a#{nope}b#{host}").0,
            vec![
                Piece::Text("a#{".into()),
                Piece::Text("nope}b".into()),
                Piece::Host
            ]
        );
    }
}

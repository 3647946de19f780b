//! Who may talk to the dashboard. It binds 127.0.0.1 only, but any page the
//! browser has open could still send requests to it (cross-site requests)
//! or reach it under another name (DNS rebinding). So, as notebook servers
//! do:
//! - a random token, printed in the URL the CLI gives; the page's first load
//!   turns it into a cookie (`HttpOnly`, `SameSite=Strict`: never sent on a
//!   cross-site request), and every API call needs the token;
//! - the Host header must name the loopback address and our port (a
//!   rebinding attacker's page sends its own host name);
//! - an action (any method but GET/HEAD) also needs the token in the
//!   `X-Dashboard-Token` header, which only our own page's script knows and
//!   which no cross-site form can set, and a foreign `Origin` or
//!   `Sec-Fetch-Site: cross-site` is refused outright.
//!
//! Pure: [`Guard::check`] sees the method, headers and query token only.

use axum::http::{HeaderMap, Method, header};

/// The cookie carrying the token after the first load.
pub const COOKIE: &str = "sf_dashboard";
/// The header an action must carry.
pub const HEADER: &str = "x-dashboard-token";

/// Why a request was refused (each maps to a status and a sentence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Host is not 127.0.0.1/localhost on our port: DNS rebinding, or a proxy.
    Host,
    /// Origin (or Sec-Fetch-Site) says another site sent it.
    CrossSite,
    /// No token, or the wrong one.
    Token,
    /// An action without the header token.
    ActionHeader,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Host | Refusal::CrossSite => 403,
            Refusal::Token | Refusal::ActionHeader => 401,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Host => {
                "the Host header must be 127.0.0.1 or localhost on the dashboard's port"
            }
            Refusal::CrossSite => "cross-site requests are refused",
            Refusal::Token => {
                "a token is needed: open the URL `storefront dashboard` printed (it carries ?token=)"
            }
            Refusal::ActionHeader => "an action needs the X-Dashboard-Token header",
        }
    }
}

/// The dashboard's secret and where it listens.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    port: u16,
}

impl Guard {
    pub fn new(token: String, port: u16) -> Self {
        Self { token, port }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Admits or refuses one request. `query_token` is `?token=` when given.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.is_our_authority(host) {
            return Err(Refusal::Host);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|a| self.is_our_authority(a));
            if !ok {
                return Err(Refusal::CrossSite);
            }
        }
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err(Refusal::CrossSite);
        }
        let cookie = cookie_value(headers, COOKIE);
        let by_header = headers.get(HEADER).and_then(|h| h.to_str().ok());
        let presented = [query_token, cookie.as_deref(), by_header];
        if !presented.iter().flatten().any(|t| same(t, &self.token)) {
            return Err(Refusal::Token);
        }
        let safe = method == Method::GET || method == Method::HEAD;
        if !safe && !by_header.is_some_and(|t| same(t, &self.token)) {
            return Err(Refusal::ActionHeader);
        }
        Ok(())
    }

    /// `127.0.0.1:PORT` or `localhost:PORT`, nothing else.
    fn is_our_authority(&self, authority: &str) -> bool {
        let Some((host, port)) = authority.rsplit_once(':') else {
            return false;
        };
        matches!(host, "127.0.0.1" | "localhost") && port.parse::<u16>() == Ok(self.port)
    }

    /// The `Set-Cookie` value that stores the token for later requests.
    pub fn set_cookie(&self) -> String {
        format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", self.token)
    }
}

/// One cookie's value from the Cookie headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Compares without stopping at the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 32401;

    fn guard() -> Guard {
        Guard::new("s3cret-token".into(), PORT)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:32401");

    #[test]
    fn the_url_token_or_the_cookie_admits_a_read_and_nothing_else_does() {
        let g = guard();
        let get = Method::GET;
        assert_eq!(
            g.check(&get, &headers(&[HOST]), Some("s3cret-token")),
            Ok(())
        );
        let cookie = ("cookie", "a=b; sf_dashboard=s3cret-token");
        assert_eq!(g.check(&get, &headers(&[HOST, cookie]), None), Ok(()));
        assert_eq!(g.check(&get, &headers(&[HOST]), None), Err(Refusal::Token));
        assert_eq!(
            g.check(&get, &headers(&[HOST]), Some("s3cret-tokeN")),
            Err(Refusal::Token)
        );
        let wrong = ("cookie", "sf_dashboard=s3cret");
        assert_eq!(
            g.check(&get, &headers(&[HOST, wrong]), None),
            Err(Refusal::Token)
        );
    }

    #[test]
    fn an_action_needs_the_header_token_even_with_the_cookie() {
        let g = guard();
        let cookie = ("cookie", "sf_dashboard=s3cret-token");
        let post = Method::POST;
        assert_eq!(
            g.check(&post, &headers(&[HOST, cookie]), None),
            Err(Refusal::ActionHeader)
        );
        assert_eq!(
            g.check(&post, &headers(&[HOST, cookie]), Some("s3cret-token")),
            Err(Refusal::ActionHeader)
        );
        let header = (HEADER, "s3cret-token");
        assert_eq!(
            g.check(&post, &headers(&[HOST, cookie, header]), None),
            Ok(())
        );
        let bad = (HEADER, "nope");
        assert_eq!(
            g.check(&post, &headers(&[HOST, cookie, bad]), None),
            Err(Refusal::ActionHeader)
        );
    }

    #[test]
    fn another_host_name_is_refused_even_with_the_token() {
        let g = guard();
        let token = Some("s3cret-token");
        for host in [
            "evil.example:32401",
            "127.0.0.1:80",
            "127.0.0.1",
            "127.0.0.1.evil.example:32401",
            "",
        ] {
            assert_eq!(
                g.check(&Method::GET, &headers(&[("host", host)]), token),
                Err(Refusal::Host),
                "{host}"
            );
        }
        let local = headers(&[("host", "localhost:32401")]);
        assert_eq!(g.check(&Method::GET, &local, token), Ok(()));
    }

    #[test]
    fn a_foreign_origin_or_a_cross_site_fetch_is_refused() {
        let g = guard();
        let all = [
            HOST,
            ("cookie", "sf_dashboard=s3cret-token"),
            (HEADER, "s3cret-token"),
        ];
        for origin in [
            "http://evil.example",
            "https://127.0.0.1:32401",
            "http://127.0.0.1:32402",
            "null",
        ] {
            let mut h = headers(&all);
            h.insert(header::ORIGIN, origin.parse().unwrap());
            assert_eq!(
                g.check(&Method::POST, &h, None),
                Err(Refusal::CrossSite),
                "{origin}"
            );
        }
        let mut h = headers(&all);
        h.insert(header::ORIGIN, "http://127.0.0.1:32401".parse().unwrap());
        assert_eq!(g.check(&Method::POST, &h, None), Ok(()));
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(g.check(&Method::POST, &h, None), Err(Refusal::CrossSite));
    }

    #[test]
    fn the_cookie_is_strict_and_unreadable_by_script() {
        let c = guard().set_cookie();
        assert!(c.starts_with("sf_dashboard=s3cret-token;"), "{c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}

//! Access control: bearer tokens with scopes, and protected mode when none are configured.
//!
//! Handlers of protected routes take a `Caller<R>` as their first argument, `R` declaring what
//! the operation needs (`Read`, `Write`, `Stats`, `AnyToken`, or a requirement of the
//! handler's own that looks at its request). Extracting it authenticates the request and
//! checks the token's scope before any other extractor validates the request (so 401/403
//! come before 400, and routing's 404/405 before both).

use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, TokenGrant};
use crate::error::{ApiError, ErrorCode};
use crate::keys::Keyspace;

/// Tokens shorter than this get a WARN at start: short ones can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a token may do.
#[derive(Debug, Clone)]
struct Scope {
    keyspace: Keyspace,
    read_only: bool,
    namespaced: bool,
}

struct TokenEntry {
    token: Box<[u8]>,
    scope: Scope,
}

enum Mode {
    /// Tokens are configured: every protected request needs one.
    Tokens(Vec<TokenEntry>),
    /// No tokens: only loopback clients are served.
    Protected,
    /// `CACHE_AUTH=disabled`: everyone is served with full access.
    Disabled,
}

/// The configured access rules.
pub struct Access {
    mode: Mode,
    default_scope: Scope,
}

/// An authenticated caller whose token allows what `R` requires: the keyspace its keys
/// live in.
#[derive(Debug, Clone)]
pub struct Caller<R: Requirement> {
    pub keyspace: Keyspace,
    requirement: PhantomData<R>,
}

/// What an operation needs from the caller's token, declared by its handler.
pub trait Requirement {
    fn of(req: &HttpRequest) -> Need;
}

/// Reads values, TTLs, listings.
pub struct Read;
/// Changes the cache.
pub struct Write;
/// Redis-wide statistics: not for namespaced tokens.
pub struct RedisWide;
/// Any valid token (`/metrics`).
pub struct AnyToken;

impl Requirement for Read {
    fn of(_: &HttpRequest) -> Need {
        Need::Read
    }
}
impl Requirement for Write {
    fn of(_: &HttpRequest) -> Need {
        Need::Write
    }
}
impl Requirement for RedisWide {
    fn of(_: &HttpRequest) -> Need {
        Need::Stats
    }
}
impl Requirement for AnyToken {
    fn of(_: &HttpRequest) -> Need {
        Need::Metrics
    }
}

/// What a request needs from its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    /// Redis-wide statistics: not for namespaced tokens.
    Stats,
    /// `/metrics`: any valid token.
    Metrics,
}

impl Access {
    /// The access rules of the configuration (whose token entries were checked when it was
    /// read), each token's scope placed in `keyspace`.
    pub fn from_config(config: &AuthConfig, keyspace: &Keyspace) -> Self {
        let default_scope = Scope {
            keyspace: keyspace.clone(),
            read_only: false,
            namespaced: false,
        };
        let mode = if config.disabled {
            Mode::Disabled
        } else if let Some(grants) = &config.tokens {
            Mode::Tokens(grants.iter().map(|g| entry(g, keyspace)).collect())
        } else {
            Mode::Protected
        };
        Self {
            mode,
            default_scope,
        }
    }

    /// A WARN naming, by position (a token never reaches the log), the configured tokens
    /// shorter than `MIN_TOKEN_CHARS`.
    pub fn warn_short_tokens(&self, source: &str) {
        let short = self.short_tokens();
        if !short.is_empty() {
            tracing::warn!(
                source,
                entries = ?short,
                "access tokens shorter than {MIN_TOKEN_CHARS} characters are easy to guess; generate long ones, e.g. with `openssl rand -hex 32`",
            );
        }
    }

    /// The positions (from 1) of the configured entries whose token is shorter than
    /// `MIN_TOKEN_CHARS`.
    pub fn short_tokens(&self) -> Vec<usize> {
        match &self.mode {
            Mode::Tokens(entries) => entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| entry.token.len() < MIN_TOKEN_CHARS)
                .map(|(index, _)| index + 1)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A one-line description of the mode, logged at start.
    pub fn describe(&self) -> String {
        match &self.mode {
            Mode::Tokens(entries) => {
                format!("bearer tokens required ({} configured)", entries.len())
            }
            Mode::Protected => {
                "protected mode: no CACHE_AUTH_TOKENS set, serving loopback clients only".into()
            }
            Mode::Disabled => {
                "access control disabled by CACHE_AUTH=disabled: every client has full access"
                    .into()
            }
        }
    }

    fn authorize(&self, req: &HttpRequest, need: Need) -> Result<Keyspace, ApiError> {
        let scope = match &self.mode {
            Mode::Disabled => &self.default_scope,
            Mode::Protected => {
                if !is_loopback(req) {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "cachegate serves only loopback clients until access tokens are configured: set CACHE_AUTH_TOKENS (or CACHE_AUTH=disabled to serve everyone)",
                    ));
                }
                &self.default_scope
            }
            Mode::Tokens(entries) => find_token(entries, bearer_token(req)?)?,
        };
        check_scope(scope, need)?;
        Ok(scope.keyspace.clone())
    }
}

impl<R: Requirement> FromRequest for Caller<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<Access>>() {
            Some(access) => access.authorize(req, R::of(req)).map(|keyspace| Caller {
                keyspace,
                requirement: PhantomData,
            }),
            None => Err(ApiError::internal()),
        })
    }
}

/// Whether the query names any of `names`, decoded as the handler's query extractor will
/// decode them (`t%74l=5` is `ttl=5`), so a read-only token cannot slip a write past the
/// check. A query that does not parse counts as naming them: refusing is the safe side.
pub fn query_names_any(req: &HttpRequest, names: &[&str]) -> bool {
    !req.query_string().is_empty()
        && web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_or(true, |pairs| {
                pairs.iter().any(|(name, _)| names.contains(&name.as_str()))
            })
}

fn check_scope(scope: &Scope, need: Need) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::new(ErrorCode::Forbidden, why.to_string()));
    match need {
        Need::Write if scope.read_only => {
            refuse("this token is read-only; the operation changes the cache")
        }
        Need::Stats if scope.namespaced => {
            refuse("this token is confined to a namespace and cannot read Redis-wide statistics")
        }
        _ => Ok(()),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message.to_string())
}

fn bearer_token(req: &HttpRequest) -> Result<&[u8], ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send an access token as Authorization: Bearer <token>"))?
        .as_bytes();
    let scheme_len = "bearer ".len();
    if value.len() > scheme_len && value[..scheme_len].eq_ignore_ascii_case(b"bearer ") {
        Ok(value[scheme_len..].trim_ascii())
    } else {
        Err(unauthorized(
            "the Authorization header must use the Bearer scheme",
        ))
    }
}

/// Compares against every entry in constant time, so timing tells nothing about which
/// token, or how much of one, matched.
fn find_token<'a>(entries: &'a [TokenEntry], presented: &[u8]) -> Result<&'a Scope, ApiError> {
    let mut found = None;
    for entry in entries {
        if bool::from(entry.token.ct_eq(presented)) {
            found = Some(&entry.scope);
        }
    }
    found.ok_or_else(|| unauthorized("the access token is not valid"))
}

fn is_loopback(req: &HttpRequest) -> bool {
    req.peer_addr().is_some_and(|addr| match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// A configured token and its scope: the whole keyspace or a namespace of it.
fn entry(grant: &TokenGrant, keyspace: &Keyspace) -> TokenEntry {
    TokenEntry {
        token: grant.token.clone(),
        scope: Scope {
            keyspace: grant
                .namespace
                .as_deref()
                .map_or_else(|| keyspace.clone(), |ns| keyspace.namespace(ns)),
            read_only: grant.read_only,
            namespaced: grant.namespace.is_some(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    /// The entries as configured (`config` checks their syntax) with their scopes.
    fn parse_from(text: &str, source: &str) -> Result<Vec<TokenEntry>, String> {
        let grants = crate::config::parse_token_grants(text, source)?;
        let keyspace = Keyspace::new("p:");
        Ok(grants.iter().map(|g| entry(g, &keyspace)).collect())
    }

    fn parse(text: &str) -> Result<Vec<TokenEntry>, String> {
        parse_from(text, "CACHE_AUTH_TOKENS")
    }

    #[test]
    fn the_placeholder_of_the_example_is_refused_without_being_shown() {
        let err = parse("good-token-0123456789,change-me-to-a-long-random-token:ro")
            .err()
            .unwrap();
        assert!(
            err.contains("entry 2") && err.contains("openssl rand -hex 32"),
            "{err}"
        );
        assert!(!err.contains("change-me-to-a-long-random-token"), "{err}");
    }

    #[test]
    fn short_tokens_are_found_by_position() {
        let config = AuthConfig {
            tokens: crate::config::parse_token_grants(
                "0123456789abcdef,short:ro,tiny@ns",
                "CACHE_AUTH_TOKENS",
            )
            .ok(),
            source: "CACHE_AUTH_TOKENS",
            disabled: false,
        };
        let access = Access::from_config(&config, &Keyspace::new("p:"));
        assert_eq!(access.short_tokens(), vec![2, 3]);
    }

    #[test]
    fn parses_every_entry_form() {
        let entries = parse("admin, reader:ro ,team@ns-1,viewer@ns_2.x:ro").unwrap();
        assert_eq!(entries.len(), 4);
        assert!(!entries[0].scope.read_only && !entries[0].scope.namespaced);
        assert!(entries[1].scope.read_only);
        assert_eq!(entries[2].scope.keyspace.prefix(), "p:ns-1:");
        assert!(entries[3].scope.read_only && entries[3].scope.namespaced);
    }

    #[test]
    fn file_form_skips_comments_and_blank_lines() {
        let text = "# tokens\n\n  # indented comment, with a comma\nadmin\r\nreader:ro, other\n";
        let entries = parse_from(text, "CACHE_AUTH_TOKENS_FILE").unwrap();
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn a_hash_is_a_token_character_in_the_variable() {
        let entries = parse("#hash-token,other").unwrap();
        assert_eq!(entries.len(), 2);
        assert!(find_token(&entries, b"#hash-token").is_ok());
    }

    #[test]
    fn malformed_entries_name_the_variable_but_not_the_token() {
        for bad in [
            "sec ret",
            "tok@",
            "tok@bad/ns",
            "a@b@c",
            "s3cret:rw",
            "s3cret:RO",
            "s3cret\u{e9}",
            "dup,dup",
            "",
            " , ",
        ] {
            let err = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(err.contains("CACHE_AUTH_TOKENS"), "{err}");
            assert!(
                !err.contains("s3cret") && !err.contains("sec ret") && !err.contains("dup,"),
                "{err}"
            );
        }
        let err = parse_from("# only a comment", "CACHE_AUTH_TOKENS_FILE")
            .err()
            .unwrap_or_default();
        assert!(err.contains("CACHE_AUTH_TOKENS_FILE"), "{err}");
    }

    #[test]
    fn token_lookup_finds_the_exact_token() {
        let entries = parse("alpha,alphabet:ro").unwrap();
        assert!(!find_token(&entries, b"alpha").unwrap().read_only);
        assert!(find_token(&entries, b"alphabet").unwrap().read_only);
        assert!(find_token(&entries, b"alph").is_err());
        assert!(find_token(&entries, b"").is_err());
    }

    #[test]
    fn the_ttl_parameter_is_seen_however_it_is_encoded() {
        let named = |query: &str| {
            query_names_any(&TestRequest::with_uri(query).to_http_request(), &["ttl"])
        };
        assert!(named("/v1/cache/k?ttl=5"));
        assert!(named("/v1/cache/k?a=1&ttl"));
        assert!(named("/v1/cache/k?t%74l=5"));
        assert!(named("/v1/cache/k?%74%74%6C=5"));
        assert!(!named("/v1/cache/k"));
        assert!(!named("/v1/cache/k?ttlx=5&xttl=1"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let token = |value: &str| {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            bearer_token(&req).map(<[u8]>::to_vec).map_err(|e| e.code)
        };
        assert_eq!(token("Bearer abc"), Ok(b"abc".to_vec()));
        assert_eq!(token("bearer  abc "), Ok(b"abc".to_vec()));
        assert_eq!(token("Basic abc"), Err(ErrorCode::Unauthorized));
        assert_eq!(token("Bearer"), Err(ErrorCode::Unauthorized));
    }
}

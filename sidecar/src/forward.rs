//! The identity API client: pooled keep-alive connections, a timeout, a cap on answers; and the
//! one question the sidecar asks the identity API itself, whether an access token is active.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use identity_protocol::identity::{Introspected, TokenRequest, bearer_header};
use identity_protocol::{headers, paths};
use identity_runtime::InternalToken;

use crate::config::Config;
use crate::connect::Connector;
use crate::error::ApiError;

/// What can go wrong talking to the identity API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// `504 upstream_timeout`.
    Timeout,
    /// `502 upstream_unavailable`: cannot connect, connection broken, or the answer is over the cap.
    Unavailable(&'static str),
    /// `502 upstream_unavailable`: the answer is not JSON.
    NotJson,
}

impl From<UpstreamError> for ApiError {
    fn from(err: UpstreamError) -> Self {
        match err {
            UpstreamError::Timeout => ApiError::upstream_timeout(),
            UpstreamError::Unavailable(why) => ApiError::upstream_unavailable(why),
            UpstreamError::NotJson => ApiError::upstream_unavailable(
                "the identity API answered something that is not JSON",
            ),
        }
    }
}

/// An identity API answer, read whole (within the cap).
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A sealed request to forward. Client-sent `X-Session-Subject` and `X-Internal-Token` never
/// get here: the upstream request is built from these fields only.
#[derive(Debug)]
pub struct Forward<'a> {
    pub path: &'a str,
    /// The client's Authorization header, unchanged.
    pub authorization: Option<&'a HeaderValue>,
    /// The session's subject, sent as `X-Session-Subject` on an authenticated session.
    pub session_subject: Option<&'a str>,
    pub forwarded_for: Option<IpAddr>,
    /// The client's tenant headers (`--tenant-headers`), checked: routing metadata of the outer
    /// request, forwarded as they came.
    pub tenant_headers: &'a [(&'a HeaderName, &'a HeaderValue)],
}

/// The identity API over plain HTTP/1.1 on pooled keep-alive connections: hyper's own client,
/// without reqwest's URL parsing and per-request layers, since the upstream is one fixed
/// `http://` base (checked in `Config::validate`) on loopback or a Unix socket.
#[derive(Debug)]
pub struct Upstream {
    client: Client<Connector, Full<Bytes>>,
    base: String,
    /// `X-Internal-Token`, built once: every request shares this value (a reference count),
    /// instead of copying the secret into a new buffer each time.
    internal_token: Option<HeaderValue>,
    timeout: Duration,
    max_body: usize,
}

/// Marked sensitive: hidden from `Debug`, never indexed by an HPACK encoder.
fn internal_token_header(token: InternalToken) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(token.expose())
        .map_err(|_| "the internal token is not a header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Self, String> {
        let connector = Connector::new(config.upstream_socket.as_deref());
        // No connect timeout of its own: the whole exchange, connecting included, runs under
        // the upstream timeout in `send`, so that a slow connect is a 504 like a slow answer.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
            client,
            base: config.upstream_base(),
            internal_token: InternalToken::configured(
                &config.internal_token,
                config.dev || config.insecure_no_internal_token,
                "SIDECAR",
            )
            .map_err(|e| e.to_string())?
            .map(internal_token_header)
            .transpose()?,
            timeout: config.upstream_timeout(),
            max_body: config.max_upstream_body_bytes,
        })
    }

    /// `POST {upstream}{path}` with a JSON body: Content-Type, the Authorization header
    /// unchanged, X-Internal-Token, X-Forwarded-For, X-Session-Subject and the tenant headers.
    /// The answer must be JSON, whatever its status.
    pub async fn post_json(
        &self,
        forward: &Forward<'_>,
        body: Bytes,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let mut request = self
            .request(Method::POST, forward.path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = forward.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(subject) = forward.session_subject {
            let value = HeaderValue::from_bytes(subject.as_bytes())
                .map_err(|_| UpstreamError::Unavailable("subject is not a header value"))?;
            request = request.header(headers::SESSION_SUBJECT, value);
        }
        if let Some(ip) = forward.forwarded_for {
            request = request.header(headers::FORWARDED_FOR, ip.to_string());
        }
        request = with_tenant_headers(request, forward.tenant_headers);
        json(self.send(request, Full::from(body)).await?)
    }

    /// Section 2: "The sidecar validates the access token with the identity API (it must be
    /// active)": `POST /api/v1/introspect` with the token as both bearer and body, through the
    /// internal path (X-Internal-Token). Returns the token's `sub`, for the caller's subject
    /// check.
    pub async fn access_token_subject(
        &self,
        token: &str,
        forwarded_for: Option<IpAddr>,
    ) -> Result<String, ApiError> {
        let mut authorization = HeaderValue::from_str(&bearer_header(token))
            .map_err(|_| ApiError::invalid_token("the bearer token is not a header value"))?;
        authorization.set_sensitive(true);
        let body = serde_json::to_vec(&TokenRequest::new(token, None))
            .map_err(|_| ApiError::invalid_token("the bearer token cannot be encoded"))?;
        let forward = Forward {
            path: paths::INTROSPECT,
            authorization: Some(&authorization),
            session_subject: None,
            forwarded_for,
            tenant_headers: &[],
        };
        let answer = self.post_json(&forward, Bytes::from(body)).await?;
        match answer.status {
            200 => {}
            401 => return Err(ApiError::invalid_token("the access token is not active")),
            status => {
                tracing::warn!(
                    status,
                    "identity API introspection answered an unexpected status"
                );
                return Err(ApiError::upstream_unavailable(
                    "the identity API could not validate the token",
                ));
            }
        }
        let introspected: Introspected = serde_json::from_slice(&answer.body).map_err(|_| {
            ApiError::upstream_unavailable("the identity API's introspection answer is malformed")
        })?;
        if !introspected.is_active_access_token() {
            return Err(ApiError::invalid_token("the access token is not active"));
        }
        // An active access token without a subject matches no X-Subject.
        Ok(introspected.sub.unwrap_or_default())
    }

    /// A standard OAuth request, passed through as a reverse proxy passes it: the method, the
    /// path and query, the body and every header as the client sent them, less those of the
    /// hop ([`end_to_end`]) and the sidecar's own (`X-Internal-Token`, `X-Session-Subject` and
    /// `X-Forwarded-For`, which are set here only). The answer may be anything, empty included.
    pub async fn pass(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        forwarded_for: Option<IpAddr>,
        body: Bytes,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        end_to_end(&mut headers);
        for name in [
            headers::INTERNAL_TOKEN,
            headers::SESSION_SUBJECT,
            headers::FORWARDED_FOR,
            // The body has been read whole: nothing is left to continue.
            "expect",
        ] {
            headers.remove(name);
        }
        let mut request = self.request(method, path_and_query);
        if let Some(request_headers) = request.headers_mut() {
            request_headers.extend(headers);
        }
        if let Some(ip) = forwarded_for {
            request = request.header(headers::FORWARDED_FOR, ip.to_string());
        }
        self.send(request, Full::from(body)).await
    }

    /// `GET {upstream}{path}` with the tenant headers, for the pass-throughs: the answer must
    /// be JSON.
    pub async fn get(
        &self,
        path: &str,
        tenant_headers: &[(&HeaderName, &HeaderValue)],
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let request = with_tenant_headers(self.request(Method::GET, path), tenant_headers);
        json(self.send(request, Full::default()).await?)
    }

    /// `GET {upstream}{path}`'s status, whatever the body: readiness.
    pub async fn get_status(&self, path: &str) -> Result<u16, UpstreamError> {
        Ok(self.get_any(path).await?.status)
    }

    async fn get_any(&self, path: &str) -> Result<UpstreamAnswer, UpstreamError> {
        self.send(self.request(Method::GET, path), Full::default())
            .await
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
    }

    async fn send(
        &self,
        mut request: http::request::Builder,
        body: Full<Bytes>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        if let Some(token) = &self.internal_token {
            request = request.header(headers::INTERNAL_TOKEN, token.clone());
        }
        // Only a path that is not a URI path could fail here; the route table has none.
        let request = request
            .body(body)
            .map_err(|_| UpstreamError::Unavailable("the request cannot be built"))?;
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| UpstreamError::Unavailable("the identity API cannot be reached"))?;
        let too_large =
            UpstreamError::Unavailable("the identity API's answer is over the size limit");
        let (parts, body) = response.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large);
        }
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large),
            Err(_) => {
                return Err(UpstreamError::Unavailable(
                    "the identity API's answer broke off",
                ));
            }
        };
        Ok(UpstreamAnswer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

fn with_tenant_headers(
    mut request: http::request::Builder,
    tenant_headers: &[(&HeaderName, &HeaderValue)],
) -> http::request::Builder {
    for &(name, value) in tenant_headers {
        request = request.header(name, value);
    }
    request
}

/// Drops the hop-by-hop headers (RFC 9110 section 7.6.1: `Connection`, those it names, and the
/// classic list), `Host` and `Content-Length`: they describe one connection, and the next hop
/// sets its own.
pub fn end_to_end(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in headers::HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
}

fn json(answer: UpstreamAnswer) -> Result<UpstreamAnswer, UpstreamError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&answer.body).is_err() {
        return Err(UpstreamError::NotJson);
    }
    Ok(answer)
}

/// Times a call for the latency histogram.
#[derive(Debug)]
pub struct Timer(Instant);

impl Timer {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser as _;

    use super::*;

    #[tokio::test]
    async fn the_internal_token_header_is_built_once_marked_sensitive_and_never_printed() {
        let mut config =
            Config::try_parse_from(["identity-sidecar", "--upstream", "http://127.0.0.1:1"])
                .unwrap();
        config.internal_token =
            identity_runtime::Secret::from_value("s3cr3t-internal-token-9f2b7c41e0a8");
        let upstream = Upstream::new(&config).unwrap();
        let header = upstream.internal_token.as_ref().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.as_bytes(), b"s3cr3t-internal-token-9f2b7c41e0a8");
        let shown = format!("{upstream:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}

//! The identity API client: pooled keep-alive connections, a timeout, a cap on answers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, header};

use super::config::{Config, InternalToken};
use super::error::ApiError;
use crate::protocol::headers;

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
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// A request to forward. Client-sent `X-Session-Subject` and `X-Internal-Token` never get here:
/// the upstream request is built from these fields only.
#[derive(Debug)]
pub struct Forward<'a> {
    pub path: &'a str,
    /// The client's Authorization header, unchanged.
    pub authorization: Option<&'a HeaderValue>,
    /// The session's subject, sent as `X-Session-Subject` on an authenticated session.
    pub session_subject: Option<&'a str>,
    pub forwarded_for: Option<IpAddr>,
}

#[derive(Debug)]
pub struct Upstream {
    client: reqwest::Client,
    base: String,
    internal_token: Option<InternalToken>,
    timeout: Duration,
    max_body: usize,
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(config.upstream_timeout())
            .build()?;
        Ok(Self {
            client,
            base: config.upstream_base(),
            internal_token: config.internal_token.clone(),
            timeout: config.upstream_timeout(),
            max_body: config.max_upstream_body_bytes,
        })
    }

    /// `POST {upstream}{path}` with a JSON body: Content-Type, the Authorization header
    /// unchanged, X-Internal-Token, X-Forwarded-For and X-Session-Subject. The answer must be
    /// JSON, whatever its status.
    pub async fn post_json(
        &self,
        forward: &Forward<'_>,
        body: Vec<u8>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let mut request = self
            .client
            .request(Method::POST, format!("{}{}", self.base, forward.path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(authorization) = forward.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(subject) = forward.session_subject {
            let value = HeaderValue::from_bytes(subject.as_bytes())
                .map_err(|_| UpstreamError::Unavailable("subject is not a header value"))?;
            request = request.header(headers::SESSION_SUBJECT, value);
        }
        if let Some(ip) = forward.forwarded_for {
            request = request.header("x-forwarded-for", ip.to_string());
        }
        self.send(request).await
    }

    /// `GET {upstream}{path}`, for the pass-throughs and readiness.
    pub async fn get(&self, path: &str) -> Result<UpstreamAnswer, UpstreamError> {
        let request = self.client.get(format!("{}{}", self.base, path));
        self.send(request).await
    }

    /// `GET {upstream}{path}`'s status, whatever the body: readiness.
    pub async fn get_status(&self, path: &str) -> Result<u16, UpstreamError> {
        let request = self.client.get(format!("{}{}", self.base, path));
        Ok(self.send_raw(request).await?.status)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let answer = self.send_raw(request).await?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&answer.body).is_err() {
            return Err(UpstreamError::NotJson);
        }
        Ok(answer)
    }

    async fn send_raw(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        if let Some(token) = &self.internal_token {
            let mut value = HeaderValue::from_str(token.as_str())
                .map_err(|_| UpstreamError::Unavailable("internal token is not a header value"))?;
            value.set_sensitive(true);
            request = request.header(headers::INTERNAL_TOKEN, value);
        }
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                UpstreamError::Timeout
            } else {
                UpstreamError::Unavailable("the identity API cannot be reached")
            }
        })?;
        let too_large =
            UpstreamError::Unavailable("the identity API's answer is over the size limit");
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large);
        }
        let status = response.status().as_u16();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| UpstreamError::Unavailable("the identity API's answer broke off"))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(UpstreamAnswer {
            status,
            content_type,
            body: Bytes::from(body),
        })
    }
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

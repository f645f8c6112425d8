//! Where a user proves itself with its password: the sealed password grant
//! (`POST /api/v1/token/password`, behind the internal token: [`api_routes`]) and the
//! /credentials routes of the password and the second factor ([`routes`]: they authenticate
//! their client with `Authorization: Basic`, as /oauth/* do). JSON bodies; answers `no-store`.
//!
//! The source the failed-login limits count by is the end client's address: the sidecar's
//! `X-Forwarded-For` on a request that carries the internal token (the sidecar sets the header
//! and drops any the client sent), else the TCP peer's address; on a Unix socket without
//! either, the service counts by the calling client instead.

use std::net::{IpAddr, SocketAddr};

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use identity_protocol::{headers, paths};
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::service::login::require_password_grant;
use crate::service::tenancy::named_id;
use crate::service::{AppState, Authenticated, ClientSource, LoginSource, PasswordGrant, Proof};
use crate::users::password::Password;

use super::{
    Named, RequestBody, authorization, internal_token_ok, named, no_store, parse_body,
    session_subject,
};

/// The peer of the connection, when it is a TCP one.
pub(super) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The routes behind the internal token (merged into /api/v1's).
pub(super) fn api_routes() -> Router<AppState> {
    Router::new().route(paths::TOKEN_PASSWORD, post(password_token))
}

/// The /credentials routes of the password and the second factor.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::CREDENTIALS_MFA_ENROLL, post(mfa_enroll))
        .route(paths::CREDENTIALS_MFA_CONFIRM, post(mfa_confirm))
        .route(paths::CREDENTIALS_PASSWORD_ROTATE, post(password_rotate))
}

/// A credential in a JSON body: wiped when dropped, never printed.
struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

fn secret(s: Option<Secret>) -> Option<Zeroizing<String>> {
    s.map(|Secret(s)| s)
}

/// `POST /api/v1/token/password` (PROTOCOL.md section 5).
#[derive(Deserialize)]
struct PasswordBody {
    username: Option<String>,
    password: Option<Secret>,
    scope: Option<String>,
    audience: Option<String>,
    otp: Option<Secret>,
    recovery_code: Option<Secret>,
}

/// `POST /credentials/mfa/enroll` and `/credentials/mfa/confirm`.
#[derive(Deserialize)]
struct MfaBody {
    username: Option<String>,
    password: Option<Secret>,
    otp: Option<Secret>,
    recovery_code: Option<Secret>,
}

/// `POST /credentials/password/rotate`.
#[derive(Deserialize)]
struct RotateBody {
    username: Option<String>,
    current_password: Option<Secret>,
    new_password: Option<Secret>,
    otp: Option<Secret>,
    recovery_code: Option<Secret>,
    #[serde(default)]
    revoke_sessions: bool,
}

/// The client, by `Authorization: Basic`, allowed the password grant.
async fn client(
    state: &AppState,
    tenant: &Named,
    headers: &HeaderMap,
) -> Result<Authenticated, ApiError> {
    let client = state
        .authenticate_client(
            authorization(headers)?,
            ClientSource::Database,
            named_id(named(tenant)),
        )
        .await?;
    require_password_grant(&client)?;
    Ok(client)
}

/// Where the request comes from (see the module's comment).
pub(super) fn source(state: &AppState, headers: &HeaderMap, peer: &Peer) -> Option<LoginSource> {
    let from_sidecar =
        state.settings().internal_token.is_some() && internal_token_ok(state, headers);
    if from_sidecar {
        let mut values = headers.get_all(headers::FORWARDED_FOR).iter();
        if let (Some(value), None) = (values.next(), values.next())
            && let Some(ip) = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Some(LoginSource::Ip(ip));
        }
    }
    peer.as_ref()
        .map(|Extension(ConnectInfo(addr))| LoginSource::Ip(addr.ip()))
}

async fn password_token(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    peer: Peer,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let client = client(&state, &tenant, &headers).await?;
    let subject = session_subject(&headers)?;
    let body: PasswordBody = parse_body(&body)?;
    let proof = Proof::new(
        body.username.as_deref(),
        secret(body.password),
        "password",
        body.otp.as_ref().map(|s| s.0.as_str()),
        body.recovery_code.as_ref().map(|s| s.0.as_str()),
    )?;
    let grant = PasswordGrant {
        proof,
        scope: body.scope.as_deref(),
        audience: body.audience.as_deref(),
        with_refresh: true,
        audience_named: "audience",
    };
    let answer = state
        .password_grant(&client, grant, source(&state, &headers, &peer), subject)
        .await?;
    Ok(no_store(answer))
}

async fn mfa_enroll(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    peer: Peer,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let client = client(&state, &tenant, &headers).await?;
    let mut body: MfaBody = parse_body(&body)?;
    let proof = mfa_proof(&mut body)?;
    let answer = state
        .mfa_enroll(
            &client,
            proof,
            source(&state, &headers, &peer),
            session_subject(&headers)?,
        )
        .await?;
    Ok(no_store(answer))
}

async fn mfa_confirm(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    peer: Peer,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let client = client(&state, &tenant, &headers).await?;
    let mut body: MfaBody = parse_body(&body)?;
    let proof = mfa_proof(&mut body)?;
    let answer = state
        .mfa_confirm(
            &client,
            proof,
            source(&state, &headers, &peer),
            session_subject(&headers)?,
        )
        .await?;
    Ok(no_store(answer))
}

/// The proof of an MFA route's body; the password moves into it (no copy of it is made).
fn mfa_proof(body: &mut MfaBody) -> Result<Proof<'_>, ApiError> {
    let password = secret(body.password.take());
    Proof::new(
        body.username.as_deref(),
        password,
        "password",
        body.otp.as_ref().map(|s| s.0.as_str()),
        body.recovery_code.as_ref().map(|s| s.0.as_str()),
    )
}

async fn password_rotate(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    peer: Peer,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let client = client(&state, &tenant, &headers).await?;
    let body: RotateBody = parse_body(&body)?;
    let proof = Proof::new(
        body.username.as_deref(),
        secret(body.current_password),
        "current_password",
        body.otp.as_ref().map(|s| s.0.as_str()),
        body.recovery_code.as_ref().map(|s| s.0.as_str()),
    )?;
    let new_password = secret(body.new_password)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::invalid_request("new_password is required"))?;
    let new_password = Password::new(new_password)
        .map_err(|e| ApiError::invalid_request(format!("new_password: {e}")))?;
    let answer = state
        .rotate_password(
            &client,
            proof,
            new_password,
            body.revoke_sessions,
            source(&state, &headers, &peer),
            session_subject(&headers)?,
        )
        .await?;
    Ok(no_store(answer))
}

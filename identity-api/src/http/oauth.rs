//! The standard OAuth 2.0 endpoints (docs/OAUTH.md): form bodies, client authentication by
//! `client_secret_basic` or `client_secret_post` (or the service token at introspection),
//! answers with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 section 5.1),
//! errors as RFC 6749 section 5.2; and the metadata that lists them (RFC 8414).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use identity_protocol::identity::basic_credentials;
use identity_protocol::paths;
use serde::Serialize;
use serde_json::json;

use crate::clients::GRANT_TYPES;
use crate::error::ApiError;
use crate::service::{
    AppState, AuthMethod, ClientCredentials, GrantRequest, Introspector, TokenParams,
};

use super::form::{Form, decode};
use super::{Named, RequestBody, authorization, named};
use crate::service::tenancy::named_id;

/// The form's media type; a `charset` parameter, if any, must be UTF-8.
const FORM: &str = "application/x-www-form-urlencoded";
/// RFC 8707: a token request may name several resources.
const REPEATABLE: &[&str] = &["resource"];
/// The client authentication methods of every endpoint here (RFC 8414 section 2).
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// `POST /oauth/token`.
pub(super) async fn token(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    peer: super::login::Peer,
    body: RequestBody,
) -> Response {
    let answer = async {
        let form = form(&headers, &body)?;
        let credentials = client_credentials(&headers, &form)?;
        let resources = form.all("resource");
        let request = GrantRequest {
            grant_type: form.get("grant_type"),
            scope: form.get("scope"),
            resources,
            audience: form.get("audience"),
            refresh_token: form.get("refresh_token"),
            username: form.get("username"),
            password: form.get("password"),
            otp: form.get("otp"),
            recovery_code: form.get("recovery_code"),
            source: super::login::source(&state, &headers, &peer),
        };
        state
            .token_grant(&credentials, &request, named_id(named(&tenant)))
            .await
    };
    standard(answer.await)
}

/// `POST /oauth/introspect`.
pub(super) async fn introspect(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Response {
    let answer = async {
        let form = form(&headers, &body)?;
        let caller = introspector(&state, &headers, &form)?;
        state
            .introspect_standard(&caller, &token_params(&form), named(&tenant))
            .await
    };
    standard(answer.await)
}

/// `POST /oauth/revoke`: 200 with an empty body (RFC 7009 section 2.2).
pub(super) async fn revoke(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Response {
    let answer = async {
        let form = form(&headers, &body)?;
        let credentials = client_credentials(&headers, &form)?;
        state
            .revoke_standard(&credentials, &token_params(&form), named_id(named(&tenant)))
            .await
            .map(|()| json!({}))
    };
    standard(answer.await)
}

fn token_params(form: &Form) -> TokenParams<'_> {
    TokenParams {
        token: form.get("token"),
        token_type_hint: form.get("token_type_hint"),
    }
}

/// The answer, or the error, with RFC 6749 section 5.1's headers.
fn standard<T: Serialize>(answer: Result<T, ApiError>) -> Response {
    let mut response = match answer {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The body as a form. A body over the limit, or late, is an `invalid_request` like any other
/// unreadable request: RFC 6749 section 5.2 has no other code for it.
fn form(headers: &HeaderMap, body: &RequestBody) -> Result<Form, ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut parts = media_type.split(';').map(str::trim);
    let is_form = parts.next().is_some_and(|t| t.eq_ignore_ascii_case(FORM));
    let utf8 = parts.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if !is_form {
        return Err(ApiError::invalid_request(format!(
            "the request body must be {FORM}"
        )));
    }
    if !utf8 {
        return Err(ApiError::invalid_request(
            "the form's charset must be UTF-8",
        ));
    }
    let bytes = body
        .0
        .as_ref()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Form::parse(bytes, REPEATABLE).map_err(|e| ApiError::invalid_request(e.to_string()))
}

/// `client_secret_basic` or `client_secret_post`, exactly one (RFC 6749 section 2.3: "The
/// client MUST NOT use more than one authentication method in each request"). No credentials
/// at all is `invalid_client` with the Basic challenge.
fn client_credentials(headers: &HeaderMap, form: &Form) -> Result<ClientCredentials, ApiError> {
    let in_body = (form.get("client_id"), form.get("client_secret"));
    let Some(value) = authorization(headers)? else {
        return match in_body {
            (Some(id), Some(secret)) => Ok(ClientCredentials {
                id: id.to_owned(),
                secret: secret.to_owned().into(),
                method: AuthMethod::Post,
            }),
            (None, Some(_)) => Err(ApiError::invalid_request(
                "client_secret is given without client_id",
            )),
            _ => Err(ApiError::InvalidClient),
        };
    };
    let (id, secret) = basic_credentials(value).ok_or(ApiError::InvalidClient)?;
    // Section 2.3.1: the id and the secret are form-encoded before Basic encodes them.
    let (Ok(id), Ok(secret)) = (decode(id.as_bytes()), decode(secret.as_bytes())) else {
        return Err(ApiError::InvalidClient);
    };
    match in_body {
        (_, Some(_)) => Err(ApiError::invalid_request(
            "the client authenticated twice: with Authorization: Basic and with client_secret \
             in the body; use one",
        )),
        (Some(body_id), None) if body_id != id.as_str() => Err(ApiError::invalid_request(
            "client_id differs from the client of the Authorization header",
        )),
        _ => Ok(ClientCredentials {
            id: id.to_string(),
            secret,
            method: AuthMethod::Basic,
        }),
    }
}

/// A client, or the holder of the service token in its header: one or the other.
fn introspector(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Introspector, ApiError> {
    let settings = state.settings();
    let mut presented = headers.get_all(&settings.service_token_header).iter();
    let Some(token) = presented.next() else {
        return client_credentials(headers, form).map(Introspector::Client);
    };
    if presented.next().is_some() {
        return Err(ApiError::invalid_request(format!(
            "more than one {} header",
            settings.service_token_header
        )));
    }
    let has_client = headers.contains_key(header::AUTHORIZATION)
        || form.get("client_id").is_some()
        || form.get("client_secret").is_some();
    if has_client {
        return Err(ApiError::invalid_request(format!(
            "the caller authenticated twice: with {} and as a client; use one",
            settings.service_token_header
        )));
    }
    match &settings.service_token {
        Some(expected) if expected.matches(token.as_bytes()) => Ok(Introspector::Service),
        _ => Err(ApiError::InvalidClient),
    }
}

/// RFC 8414 authorization server metadata, also served as `/.well-known/openid-configuration`
/// for clients that look there: exactly what works. No authorization endpoint (no grant here
/// uses one), so no response type; no ID tokens, so no OpenID Connect fields. The scopes are
/// those of the tenant's enabled clients. Per tenant: the one the request names, else the
/// default; its URLs are under its issuer.
pub(super) async fn metadata(
    State(state): State<AppState>,
    tenant: Named,
) -> Result<Response, ApiError> {
    let tenant = state.request_tenant(named(&tenant))?;
    let scopes = state.scopes_supported(&tenant.id).await?;
    let iss = tenant.issuer.trim_end_matches('/');
    let document = json!({
        "issuer": tenant.issuer,
        "token_endpoint": format!("{iss}{}", paths::OAUTH_TOKEN),
        "introspection_endpoint": format!("{iss}{}", paths::OAUTH_INTROSPECT),
        "revocation_endpoint": format!("{iss}{}", paths::OAUTH_REVOKE),
        "jwks_uri": format!("{iss}{}", paths::JWKS),
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],
        "scopes_supported": *scopes,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "access_token_signing_alg_values_supported": [tenant.algorithm.as_str()],
    });
    Ok(Json(document).into_response())
}

//! The API-key routes of /credentials (`service::api_keys`): JSON bodies, the client by
//! `Authorization: Basic`, answers never stored by a cache.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use identity_protocol::paths;

use super::{Named, RequestBody, authorization, named, no_store, parse_body, session_subject};
use crate::error::ApiError;
use crate::service::AppState;
use crate::service::tenancy::named_id;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::CREDENTIALS_API_KEY_VALIDATE, post(validate))
        .route(paths::CREDENTIALS_API_KEY_ROTATE, post(rotate))
}

async fn validate(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let answer = state
        .validate_api_key(
            authorization(&headers)?,
            named_id(named(&tenant)),
            session_subject(&headers)?,
            parse_body(&body),
        )
        .await?;
    Ok(no_store(answer))
}

async fn rotate(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let answer = state
        .rotate_api_key(
            authorization(&headers)?,
            named_id(named(&tenant)),
            session_subject(&headers)?,
            parse_body(&body),
        )
        .await?;
    Ok(no_store(answer))
}

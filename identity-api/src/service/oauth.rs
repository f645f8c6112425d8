//! The standard OAuth 2.0 endpoints (docs/OAUTH.md), over the same operations as section 5:
//! `POST /oauth/token` (RFC 6749: client_credentials, refresh_token, password), `/oauth/introspect` (RFC
//! 7662), `/oauth/revoke` (RFC 7009). Their callers authenticate as clients, with
//! `client_secret_basic` or `client_secret_post` (RFC 6749 section 2.3.1); introspection also
//! takes the service token.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::clients::{CLIENT_CREDENTIALS, REFRESH_TOKEN, has_grant};
use crate::clock::now;
use crate::error::ApiError;
use crate::storage::{AuditRow, RequestEvent, TenantId};

use super::answers::{Introspection, TokenResponse};
use super::callers::{Authenticated, ClientSource};
use super::granted::{self, Grantee};
use super::refresh::{Holder, Narrowing};
use super::state::AppState;
use super::tenancy::{NamedTenant, named_id};

/// How a client presented its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `client_secret_basic`: `Authorization: Basic`.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// A client's id and secret as a request of a standard endpoint presented them. The secret is
/// wiped on drop.
pub struct ClientCredentials {
    pub id: String,
    pub secret: Zeroizing<String>,
    pub method: AuthMethod,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// RFC 6749 section 5.2: a client that used `Authorization` gets 401 with the challenge of
    /// its scheme; one that put its secret in the body, 401 without.
    pub(super) fn refused(&self) -> ApiError {
        match self.method {
            AuthMethod::Basic => ApiError::InvalidClient,
            AuthMethod::Post => ApiError::InvalidClientInBody,
        }
    }

    pub(super) fn refusal(&self, error: ApiError) -> ApiError {
        match error {
            ApiError::InvalidClient => self.refused(),
            other => other,
        }
    }
}

/// Who calls /oauth/introspect.
#[derive(Debug)]
pub enum Introspector {
    Client(ClientCredentials),
    /// The holder of the service token (`--service-token`), checked by the HTTP layer.
    Service,
}

/// The parameters of `POST /oauth/token` this server reads; empty ones count as absent (RFC
/// 6749 section 3.1).
/// `Debug` shows no credential.
#[derive(Default)]
pub struct GrantRequest<'a> {
    pub grant_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// RFC 8707 `resource`: every value given (more than one is refused: a token has one
    /// audience).
    pub resources: Vec<&'a str>,
    /// `audience`, as Hydra, Keycloak and Auth0 name the same thing.
    pub audience: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    /// The password grant's (RFC 6749 section 4.3), and the second factor of a user who has one.
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub otp: Option<&'a str>,
    pub recovery_code: Option<&'a str>,
    /// Where the request comes from, for the failed-login limits.
    pub source: Option<super::lockout::LoginSource>,
}

impl std::fmt::Debug for GrantRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("resources", &self.resources)
            .field("audience", &self.audience)
            .field("username", &self.username)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl GrantRequest<'_> {
    /// The audience asked for, by `resource` or `audience` (the same one if both).
    pub(super) fn audience(&self) -> Result<Option<&str>, ApiError> {
        let resource = match self.resources.as_slice() {
            [] => None,
            [one] => Some(*one),
            _ => {
                return Err(ApiError::InvalidTarget(
                    "one resource per token: the token's audience is a single resource".into(),
                ));
            }
        };
        match (resource, self.audience) {
            (Some(r), Some(a)) if r != a => Err(ApiError::InvalidTarget(
                "resource and audience name different resources".into(),
            )),
            (r, a) => Ok(r.or(a)),
        }
    }
}

/// The parameters of `POST /oauth/introspect` and `/oauth/revoke`.
#[derive(Debug, Default)]
pub struct TokenParams<'a> {
    pub token: Option<&'a str>,
    pub token_type_hint: Option<&'a str>,
}

impl TokenParams<'_> {
    fn token(&self) -> Result<&str, ApiError> {
        self.token
            .ok_or_else(|| ApiError::invalid_request("token is required"))
    }
}

impl AppState {
    pub(super) async fn authenticate_standard(
        &self,
        credentials: &ClientCredentials,
        from: ClientSource,
        named: Option<&TenantId>,
    ) -> Result<Authenticated, ApiError> {
        self.authenticate_credentials(&credentials.id, &credentials.secret, from, named)
            .await
            .map_err(|e| credentials.refusal(e))
    }

    /// `POST /oauth/token`. The client authenticates first; a client_credentials grant may be
    /// answered from the client cache (its write checks the client, as an issue's does), a
    /// refresh_token grant reads the client afresh.
    pub async fn token_grant(
        &self,
        credentials: &ClientCredentials,
        request: &GrantRequest<'_>,
        named: Option<&TenantId>,
    ) -> Result<TokenResponse, ApiError> {
        match request.grant_type {
            Some(CLIENT_CREDENTIALS) => {
                return self.client_credentials(credentials, request, named).await;
            }
            Some(REFRESH_TOKEN) => return self.refresh_grant(credentials, request, named).await,
            Some(super::login::PASSWORD_GRANT) => {
                return self
                    .password_grant_standard(credentials, request, named)
                    .await;
            }
            _ => {}
        }
        self.authenticate_standard(credentials, ClientSource::Database, named)
            .await?;
        Err(match request.grant_type {
            None => ApiError::invalid_request("grant_type is required"),
            Some(_) => ApiError::UnsupportedGrantType(
                "this grant_type is not supported: use client_credentials, refresh_token or \
                 password"
                    .into(),
            ),
        })
    }

    /// RFC 6749 section 4.4: a token for the client itself (`sub` is its id), with a refresh
    /// token only when the client may use the refresh_token grant. As with an issue, a refusal
    /// that a cached client row led to is decided again on the row read afresh.
    async fn client_credentials(
        &self,
        credentials: &ClientCredentials,
        request: &GrantRequest<'_>,
        named: Option<&TenantId>,
    ) -> Result<TokenResponse, ApiError> {
        let client = self
            .authenticate_standard(credentials, ClientSource::CacheOrDatabase, named)
            .await?;
        match self.client_credentials_for(&client, request).await {
            Err(e) if client.cached && e.status().is_client_error() => {
                let fresh = self
                    .authenticate_standard(credentials, ClientSource::Recheck, named)
                    .await?;
                self.client_credentials_for(&fresh, request).await
            }
            answer => answer,
        }
        .map_err(|e| credentials.refusal(e))
    }

    async fn client_credentials_for(
        &self,
        authenticated: &Authenticated,
        request: &GrantRequest<'_>,
    ) -> Result<TokenResponse, ApiError> {
        let client = &*authenticated.row;
        if !has_grant(&client.grant_types, CLIENT_CREDENTIALS) {
            return Err(ApiError::GrantNotAllowed(
                "the client may not use the client_credentials grant".into(),
            ));
        }
        let scope = granted::scope(&client.scopes, request.scope, Grantee::Client)?;
        let audience = granted::audience(
            &client.audiences,
            request.audience()?,
            "resource (or audience)",
        )?;
        let with_refresh = has_grant(&client.grant_types, REFRESH_TOKEN);
        self.open_family(
            authenticated,
            &client.client_id,
            scope,
            audience,
            with_refresh,
        )
        .await
    }

    /// RFC 6749 section 6: the rotation of /api/v1/token, the refresh token's holder being the
    /// authenticated client (read afresh: no cached row answers a refresh).
    async fn refresh_grant(
        &self,
        credentials: &ClientCredentials,
        request: &GrantRequest<'_>,
        named: Option<&TenantId>,
    ) -> Result<TokenResponse, ApiError> {
        let client = self
            .authenticate_standard(credentials, ClientSource::Database, named)
            .await?;
        if !has_grant(&client.row.grant_types, REFRESH_TOKEN) {
            return Err(ApiError::GrantNotAllowed(
                "the client may not use the refresh_token grant".into(),
            ));
        }
        let presented = request
            .refresh_token
            .ok_or_else(|| ApiError::invalid_request("refresh_token is required"))?;
        let narrowing = Narrowing {
            scope: request.scope,
            audience: request.audience()?,
        };
        self.rotate(presented, Holder::Client(&client.row), narrowing)
            .await
    }

    /// RFC 7662: a client sees its own tokens; a client with `may_introspect` sees every token
    /// of its tenant, and the holder of the service token every token of the tenant the request
    /// names (else the default tenant's); any other token is `{"active": false}`. A cached
    /// client row answers only about the client's own tokens: whether it may see another's is
    /// decided on its row read afresh, so that `client update --may-introspect` acts at once,
    /// both ways.
    pub async fn introspect_standard(
        &self,
        caller: &Introspector,
        params: &TokenParams<'_>,
        named: Option<&NamedTenant>,
    ) -> Result<Introspection, ApiError> {
        let named_id = named_id(named);
        let client = match caller {
            Introspector::Client(credentials) => Some((
                credentials,
                self.authenticate_standard(credentials, ClientSource::CacheOrDatabase, named_id)
                    .await?,
            )),
            Introspector::Service => None,
        };
        let tenant = match &client {
            Some((_, client)) => Arc::clone(&client.tenant),
            None => self.request_tenant(named)?,
        };
        let token = params.token()?;
        let mut answer = self
            .find_active(token, params.token_type_hint, &tenant.id, |_, _| true, None)
            .await?;
        if let Some((credentials, client)) = &client
            && answer
                .client_id()
                .is_some_and(|id| id != client.row.client_id)
        {
            let may_introspect = if client.cached {
                self.authenticate_standard(credentials, ClientSource::Recheck, named_id)
                    .await?
                    .row
                    .may_introspect
            } else {
                client.row.may_introspect
            };
            if !may_introspect {
                answer = Introspection::Inactive;
            }
        }
        self.count_introspection(&answer);
        Ok(answer)
    }

    /// RFC 7009: revoking a token revokes its family, whichever kind it is (for an access
    /// token, the stricter choice). An unknown, expired or revoked token is answered as a
    /// success (section 2.2); so is another client's token, which stays as it was: section 2.1
    /// would refuse it, but an error would tell the caller that the token exists and whose it
    /// is. The attempt is audited.
    pub async fn revoke_standard(
        &self,
        credentials: &ClientCredentials,
        params: &TokenParams<'_>,
        named: Option<&TenantId>,
    ) -> Result<(), ApiError> {
        let client = self
            .authenticate_standard(credentials, ClientSource::Database, named)
            .await?;
        let Some(family) = self.family_of(params.token()?, &client.tenant.id).await? else {
            return Ok(());
        };
        if family.client_id != client.row.client_id {
            // On behalf of the client that asked, naming the family it named.
            let audit = AuditRow {
                client_id: Some(client.row.client_id.clone()),
                subject: None,
                ..AuditRow::family(now(), RequestEvent::Revoke, &family, "refused_other_client")
            };
            if let Err(e) = self.inner.db.audit(&audit).await {
                tracing::warn!(error = %e, "audit write failed");
            }
            return Ok(());
        }
        self.revoke_family(&family).await
    }
}

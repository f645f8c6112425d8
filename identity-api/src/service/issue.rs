//! Step 2 of PROTOCOL.md section 5, `POST /api/v1/token/issue`: a client issues a token pair
//! for a subject, which opens a new token family. Also what every issue and refresh mints: an
//! access token and a refresh token of a family.

use std::sync::Arc;

use identity_protocol::identity::{IssueRequest, check_subject as check_subject_rule};
use zeroize::Zeroizing;

use crate::clients::SubjectPolicy;
use crate::clock::now;
use crate::error::ApiError;
use crate::keys::Tenant;
use crate::secret::Fresh;
use crate::storage::TenantId;
use crate::storage::{ClientRow, ClientSeen, FamilyRow, Opened, RefreshRow};
use crate::tokens::{self, Claims, TokenError, Verified, VerifiedCache};

use super::answers::TokenResponse;
use super::callers::{Authenticated, ClientSource, Parsed, check_subject};
use super::granted::{self, Grantee};
use super::state::AppState;

impl AppState {
    /// Authenticates the client first, then judges the request. A client row from the cache
    /// answers only a success: a refusal (4xx) it led to is decided again on the client read
    /// afresh, so that a client disabled, rotated or updated since the row was read gets the
    /// answer it would get without the cache: `invalid_client`, or the new grants' answer.
    /// (Not a server error, which is answered as it is.)
    pub async fn issue(
        &self,
        authorization: Option<&[u8]>,
        session_subject: Parsed<Option<&str>>,
        request: Parsed<IssueRequest<'_>>,
        named: Option<&TenantId>,
    ) -> Result<TokenResponse, ApiError> {
        let client = self
            .authenticate_client(authorization, ClientSource::CacheOrDatabase, named)
            .await?;
        let (subject, request) = match session_subject.and_then(|s| Ok((s, request?))) {
            Ok(parsed) => parsed,
            Err(e) => {
                if client.cached {
                    self.authenticate_client(authorization, ClientSource::Recheck, named)
                        .await?;
                }
                return Err(e);
            }
        };
        match self.issue_for(&client, subject, &request).await {
            Err(e) if client.cached && e.status().is_client_error() => {
                let fresh = self
                    .authenticate_client(authorization, ClientSource::Recheck, named)
                    .await?;
                self.issue_for(&fresh, subject, &request).await
            }
            answer => answer,
        }
    }

    async fn issue_for(
        &self,
        authenticated: &Authenticated,
        session_subject: Option<&str>,
        req: &IssueRequest<'_>,
    ) -> Result<TokenResponse, ApiError> {
        let client = &*authenticated.row;
        check_subject_rule(&req.subject).map_err(|e| ApiError::invalid_request(e.to_string()))?;
        check_subject(session_subject, &req.subject)?;
        check_policy(client, &req.subject)?;
        let scope = granted::scope(&client.scopes, req.scope.as_deref(), Grantee::Client)?;
        let audience = granted::audience(&client.audiences, req.audience.as_deref(), "audience")?;
        self.open_family(authenticated, &req.subject, scope, audience, true)
            .await
    }

    /// Opens a family of the client for `subject`, with the scope and the audience judged
    /// already, and answers its first access token, with a refresh token when `with_refresh`.
    /// A family without one (client_credentials) ends with its access token.
    pub(super) async fn open_family(
        &self,
        authenticated: &Authenticated,
        subject: &str,
        scope: String,
        audience: String,
        with_refresh: bool,
    ) -> Result<TokenResponse, ApiError> {
        self.open_family_with_roles(authenticated, subject, scope, audience, with_refresh, None)
            .await
    }

    /// [`Self::open_family`] for a user: `roles` (space-separated) are the family's, and its
    /// access tokens' `roles` claim.
    pub(super) async fn open_family_with_roles(
        &self,
        authenticated: &Authenticated,
        subject: &str,
        scope: String,
        audience: String,
        with_refresh: bool,
        roles: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        let client = &*authenticated.row;
        let tenant = &*authenticated.tenant;
        let inner = &self.inner;
        let now = now();
        let lifetime = if with_refresh {
            tenant.family_ttl
        } else {
            tenant.access_ttl.min(tenant.family_ttl)
        };
        let mut fresh = Fresh::draw();
        let family = FamilyRow {
            family_id: fresh.time_ordered_id(),
            client_id: client.client_id.clone(),
            subject: subject.to_owned(),
            scope,
            audience,
            created_at: now,
            expires_at: now.saturating_add(lifetime),
            last_used_at: now,
            revoked_at: None,
            revoke_reason: None,
            tenant_id: tenant.id.clone(),
            roles,
        };
        let (access_token, expires_in) = self.sign_access(tenant, &family, now, &mut fresh)?;
        let refresh = with_refresh.then(|| self.new_refresh(tenant, &family, now, &mut fresh));
        let scope = family.scope.clone();
        let client_id = &client.client_id;
        let seen = ClientSeen {
            verifier: authenticated.verifier.to_vec(),
            scopes: client.scopes.clone(),
            audiences: client.audiences.clone(),
            grant_types: client.grant_types.clone(),
            subject_policy: client.subject_policy.clone(),
        };
        let (refresh, row) = match refresh {
            Some((token, row)) => (Some(token), Some(row)),
            None => (None, None),
        };
        let refresh_exp = row.as_ref().map(|r| r.expires_at);
        match inner.db.create_family(family, row, seen).await? {
            Opened::Stored => {}
            Opened::ClientChanged => {
                inner.clients.remove(client_id);
                tracing::info!(
                    client_id,
                    "issue refused: the client was disabled, rotated or updated meanwhile"
                );
                return Err(ApiError::InvalidClient);
            }
        }
        inner.metrics.tokens_issued.inc();
        let refresh = refresh
            .as_deref()
            .zip(refresh_exp)
            .map(|(token, exp)| (token.as_str(), exp - now));
        Ok(TokenResponse::new(access_token, expires_in, refresh, scope))
    }

    /// A new refresh token of `family`: the token, shown once, and its row (which stores only
    /// the token's lookup key).
    pub(super) fn new_refresh(
        &self,
        tenant: &Tenant,
        family: &FamilyRow,
        now: i64,
        fresh: &mut Fresh,
    ) -> (Zeroizing<String>, RefreshRow) {
        let (token, key) = fresh.refresh_token();
        let expires_at = now
            .saturating_add(tenant.refresh_ttl)
            .min(family.expires_at);
        let row = RefreshRow::new(key, fresh.id(), family, now, expires_at);
        (token, row)
    }

    /// An access token of `family`, signed with its tenant's key, and its lifetime in seconds.
    pub(super) fn sign_access(
        &self,
        tenant: &Tenant,
        family: &FamilyRow,
        now: i64,
        fresh: &mut Fresh,
    ) -> Result<(String, i64), ApiError> {
        let exp = now.saturating_add(tenant.access_ttl).min(family.expires_at);
        let claims = Claims {
            iss: tenant.issuer.clone(),
            sub: family.subject.clone(),
            aud: family.audience.clone(),
            client_id: family.client_id.clone(),
            scope: family.scope.clone(),
            iat: now,
            exp,
            jti: fresh.id(),
            fid: family.family_id.clone(),
            roles: family.roles.as_deref().map(|roles| {
                roles
                    .split(' ')
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        };
        let token = tokens::sign(tenant, &claims).map_err(|e| match e {
            TokenError::NoKey => ApiError::NoSigningKey,
            other => ApiError::Internal(other.to_string()),
        })?;
        // What verifying this token would give: its first use (a refresh presents it as the
        // bearer) then skips the signature check, which costs more than signing.
        let verified = Verified {
            tenant: tenant.id.clone(),
            claims,
        };
        self.inner
            .cache
            .insert(VerifiedCache::key(&token), Arc::new(verified), now);
        Ok((token, exp - now))
    }
}

/// Whether the client's subject policy lets it name `subject`. A stored policy that is not
/// one (written into the database by hand) refuses every subject as a server error, which the
/// log explains.
fn check_policy(client: &ClientRow, subject: &str) -> Result<(), ApiError> {
    let policy = client
        .subject_policy
        .parse::<SubjectPolicy>()
        .map_err(|e| {
            ApiError::Internal(format!(
                "client {} has an unusable subject policy: {e}",
                client.client_id
            ))
        })?;
    if policy.permits(&client.client_id, subject) {
        Ok(())
    } else {
        Err(ApiError::SubjectNotAllowed {
            own_id_only: policy == SubjectPolicy::OwnId,
        })
    }
}

//! Step 5 of PROTOCOL.md section 5, `POST /api/v1/token`: a refresh token is spent for a new
//! pair in its family. "Presenting a spent refresh token revokes its whole family." The
//! rotation is also /oauth/token's refresh_token grant (`oauth`).

use identity_protocol::identity::{REFRESH_TOKEN_GRANT, RefreshRequest};
use zeroize::Zeroizing;

use crate::clock::now;
use crate::error::ApiError;
use crate::secret::{Fresh, refresh_token_key};
use crate::storage::{AuditRow, FamilyRow, RequestEvent, Rotation, Scope, TenantId};
use crate::tokens::Verified;

use crate::storage::ClientRow;

use super::answers::TokenResponse;
use super::granted::{self, Grantee};
use super::state::AppState;

/// Who presents a refresh token, and must hold it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Holder<'a> {
    /// /api/v1/token: the bearer's client and subject.
    Bearer(&'a Verified),
    /// /oauth/token: the authenticated client, whatever the subject.
    Client(&'a ClientRow),
}

impl Holder<'_> {
    /// Its tenant: the only one whose refresh tokens it can present.
    fn tenant(&self) -> &TenantId {
        match self {
            Self::Bearer(bearer) => &bearer.tenant,
            Self::Client(client) => &client.tenant_id,
        }
    }

    fn holds(self, family: &FamilyRow) -> bool {
        match self {
            Self::Bearer(bearer) => {
                family.client_id == bearer.client_id && family.subject == bearer.sub
            }
            Self::Client(client) => family.client_id == client.client_id,
        }
    }

    fn refusal(self) -> ApiError {
        match self {
            Self::Bearer(_) => {
                ApiError::InvalidGrant("the refresh token belongs to another client or subject")
            }
            Self::Client(_) => {
                ApiError::InvalidGrant("the refresh token was issued to another client")
            }
        }
    }
}

/// What a refresh at /oauth/token may narrow (RFC 6749 section 6, RFC 8707 section 2.2): the
/// access token's scope, within the family's; its audience, which must be the family's.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Narrowing<'a> {
    pub scope: Option<&'a str>,
    pub audience: Option<&'a str>,
}

impl AppState {
    /// The bearer must belong to the refresh token's client and subject (it may have expired).
    pub async fn refresh(
        &self,
        bearer: &Verified,
        req: RefreshRequest<'_>,
    ) -> Result<TokenResponse, ApiError> {
        match req.grant_type.as_deref() {
            None => return Err(ApiError::invalid_request("grant_type is required")),
            Some(REFRESH_TOKEN_GRANT) => {}
            Some(_) => {
                return Err(ApiError::UnsupportedGrantType(
                    "grant_type must be refresh_token".into(),
                ));
            }
        }
        let presented = Zeroizing::new(req.refresh_token.unwrap_or_default().into_owned());
        if presented.is_empty() {
            return Err(ApiError::invalid_request("refresh_token is required"));
        }
        self.rotate(&presented, Holder::Bearer(bearer), Narrowing::default())
            .await
    }

    /// Spends `presented` for a new pair of its family: "Presenting a spent refresh token
    /// revokes its whole family"; another holder's token is refused and nothing is revoked. A
    /// refresh token of another tenant than the holder's is not found.
    pub(super) async fn rotate(
        &self,
        presented: &str,
        holder: Holder<'_>,
        narrowing: Narrowing<'_>,
    ) -> Result<TokenResponse, ApiError> {
        let inner = &self.inner;
        let m = &inner.metrics;
        let found = match refresh_token_key(presented) {
            Some(key) => inner
                .db
                .refresh_token(Scope::Tenant(holder.tenant()), &key)
                .await?
                .map(|view| (key, view)),
            None => None,
        };
        let Some((old_key, view)) = found else {
            m.refresh("unknown");
            return Err(ApiError::InvalidGrant("unknown refresh token"));
        };
        let family = &view.family;
        // Another client's or subject's token: refused, and nothing is revoked.
        if !holder.holds(family) {
            m.refresh("mismatch");
            self.audit_refresh(family, "refused_other_client_or_subject")
                .await;
            return Err(holder.refusal());
        }
        if family.revoked_at.is_some() {
            m.refresh("revoked");
            self.audit_refresh(family, "refused_revoked").await;
            return Err(ApiError::InvalidGrant("the refresh token has been revoked"));
        }
        if view.token.spent {
            return Err(self.reuse_detected(family).await);
        }
        let now = now();
        if now >= view.token.expires_at || now >= family.expires_at {
            m.refresh("expired");
            self.audit_refresh(family, "refused_expired").await;
            return Err(ApiError::InvalidGrant("the refresh token has expired"));
        }
        let narrowed = narrowed(family, narrowing)?;
        let Some(tenant) = self.credential_tenant(&family.tenant_id, None) else {
            return Err(ApiError::InvalidGrant("unknown refresh token"));
        };

        let mut fresh = Fresh::draw();
        let (access_token, expires_in) = self.sign_access(
            &tenant,
            narrowed.as_ref().unwrap_or(family),
            now,
            &mut fresh,
        )?;
        let (refresh, new) = self.new_refresh(&tenant, family, now, &mut fresh);
        let refresh_exp = new.expires_at;
        let outcome = inner.db.rotate_refresh(old_key, new, now, family).await?;
        if outcome == Rotation::Lost {
            // Spent by a concurrent request in the meantime: that is reuse too.
            return Err(self.reuse_detected(family).await);
        }
        m.refresh("rotated");
        let scope = narrowed.map_or_else(|| family.scope.clone(), |n| n.scope);
        Ok(TokenResponse::new(
            access_token,
            expires_in,
            Some((&refresh, refresh_exp - now)),
            scope,
        ))
    }

    /// Audits a refused refresh of a known family; a failing audit write does not change the
    /// answer.
    async fn audit_refresh(&self, family: &FamilyRow, outcome: &str) {
        let audit = AuditRow::family(now(), RequestEvent::Refresh, family, outcome);
        if let Err(e) = self.inner.db.audit(&audit).await {
            tracing::warn!(error = %e, "audit write failed");
        }
    }

    /// A spent refresh token was presented: the whole family is revoked.
    async fn reuse_detected(&self, family: &FamilyRow) -> ApiError {
        let m = &self.inner.metrics;
        m.refresh("reuse");
        m.reuse_detected.inc();
        tracing::warn!(client_id = %family.client_id, family_id = %family.family_id,
            "refresh token reuse detected; revoking the family");
        let now = now();
        let audit = AuditRow::family(now, RequestEvent::ReuseDetected, family, "family_revoked");
        match self
            .inner
            .db
            .revoke_family(&family.tenant_id, &family.family_id, now, "reuse", &audit)
            .await
        {
            Ok(true) => {
                m.revocations.inc();
            }
            Ok(false) => {}
            Err(e) => return ApiError::Store(e),
        }
        ApiError::InvalidGrant("the refresh token was already used; its family is revoked")
    }
}

/// The family as the new access token shows it, when a refresh narrows it: its scope within
/// the family's ([`granted::scope`]); the audience may only be the family's. `None`: the
/// token is the family's, as it was granted.
fn narrowed(family: &FamilyRow, narrowing: Narrowing<'_>) -> Result<Option<FamilyRow>, ApiError> {
    if narrowing
        .audience
        .is_some_and(|audience| audience != family.audience)
    {
        return Err(ApiError::InvalidTarget(
            "the refresh token was not granted for this resource".into(),
        ));
    }
    let Some(requested) = narrowing.scope else {
        return Ok(None);
    };
    let scope = granted::scope(&family.scope, Some(requested), Grantee::RefreshToken)?;
    Ok(Some(FamilyRow {
        scope,
        ..family.clone()
    }))
}

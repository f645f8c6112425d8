//! Step 6 of PROTOCOL.md section 5, `POST /api/v1/revoke`: "Revoking any token of a family
//! revokes the whole family, also when the token is spent or already revoked." /oauth/revoke
//! (`oauth`) finds and revokes families the same way.

use identity_protocol::identity::TokenRequest;

use crate::clock::now;
use crate::error::ApiError;
use crate::secret::refresh_token_key;
use crate::storage::{AuditRow, FamilyRow, RequestEvent, Scope, TenantId};
use crate::tokens::Verified;

use super::answers::Revoked;
use super::callers::{looks_like_jwt, presented_token};
use super::state::AppState;

impl AppState {
    /// The bearer must belong to the token's client and subject (it may have expired).
    pub async fn revoke(
        &self,
        bearer: &Verified,
        req: TokenRequest<'_>,
    ) -> Result<Revoked, ApiError> {
        let token = presented_token(req)?;
        let Some(family) = self.family_of(&token, &bearer.tenant).await? else {
            return Ok(Revoked { revoked: false });
        };
        if family.client_id != bearer.client_id || family.subject != bearer.sub {
            return Err(ApiError::UnauthorizedClient);
        }
        self.revoke_family(&family).await?;
        Ok(Revoked { revoked: true })
    }

    /// The family of `tenant` a token names: any token of a family, also spent, expired or
    /// already revoked, names it. `None` for a token that is not one of the tenant's.
    pub(super) async fn family_of(
        &self,
        token: &str,
        tenant: &TenantId,
    ) -> Result<Option<FamilyRow>, ApiError> {
        let db = &self.inner.db;
        Ok(if looks_like_jwt(token) {
            match self.verify_access_token(token, now()).await {
                Ok(claims) if claims.tenant == *tenant => db.family(tenant, &claims.fid).await?,
                _ => None,
            }
        } else {
            match refresh_token_key(token) {
                Some(key) => db
                    .refresh_token(Scope::Tenant(tenant), &key)
                    .await?
                    .map(|v| v.family),
                None => None,
            }
        })
    }

    /// Revokes `family` (nothing when it is revoked already), with its audit row.
    pub(super) async fn revoke_family(&self, family: &FamilyRow) -> Result<(), ApiError> {
        let now = now();
        let audit = AuditRow::family(now, RequestEvent::Revoke, family, "family_revoked");
        if self
            .inner
            .db
            .revoke_family(&family.tenant_id, &family.family_id, now, "revoked", &audit)
            .await?
        {
            self.inner.metrics.revocations.inc();
        }
        Ok(())
    }
}

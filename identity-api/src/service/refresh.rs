//! Step 5 of PROTOCOL.md section 5, `POST /api/v1/token`: a refresh token is spent for a new
//! pair in its family. "Presenting a spent refresh token revokes its whole family."

use identity_protocol::identity::{REFRESH_TOKEN_GRANT, RefreshRequest};
use zeroize::Zeroizing;

use crate::clock::now;
use crate::error::ApiError;
use crate::secret::{Fresh, refresh_token_key};
use crate::storage::{AuditRow, FamilyRow, Rotation};
use crate::tokens::Claims;

use super::answers::TokenResponse;
use super::state::AppState;

impl AppState {
    /// The bearer must belong to the refresh token's client and subject (it may have expired).
    pub async fn refresh(
        &self,
        bearer: &Claims,
        req: RefreshRequest<'_>,
    ) -> Result<TokenResponse, ApiError> {
        match req.grant_type.as_deref() {
            None => return Err(ApiError::invalid_request("grant_type is required")),
            Some(REFRESH_TOKEN_GRANT) => {}
            Some(_) => return Err(ApiError::UnsupportedGrantType),
        }
        let presented = Zeroizing::new(req.refresh_token.unwrap_or_default().into_owned());
        if presented.is_empty() {
            return Err(ApiError::invalid_request("refresh_token is required"));
        }
        let inner = &self.inner;
        let m = &inner.metrics;
        let found = match refresh_token_key(&presented) {
            Some(key) => inner.db.refresh_token(&key).await?.map(|view| (key, view)),
            None => None,
        };
        let Some((old_key, view)) = found else {
            m.refresh("unknown");
            return Err(ApiError::InvalidGrant("unknown refresh token"));
        };
        let family = &view.family;
        // Another client's or subject's token: refused, and nothing is revoked.
        if family.client_id != bearer.client_id || family.subject != bearer.sub {
            m.refresh("mismatch");
            self.audit_refresh(family, "refused_other_client_or_subject")
                .await;
            return Err(ApiError::InvalidGrant(
                "the refresh token belongs to another client or subject",
            ));
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

        let mut fresh = Fresh::draw();
        let (access_token, expires_in) = self.sign_access(family, now, &mut fresh)?;
        let (refresh, new) = self.new_refresh(family, now, &mut fresh);
        let refresh_exp = new.expires_at;
        let outcome = inner.db.rotate_refresh(old_key, new, now, family).await?;
        if outcome == Rotation::Lost {
            // Spent by a concurrent request in the meantime: that is reuse too.
            return Err(self.reuse_detected(family).await);
        }
        m.refresh("rotated");
        Ok(TokenResponse::new(
            access_token,
            expires_in,
            &refresh,
            refresh_exp - now,
            family.scope.clone(),
        ))
    }

    /// Audits a refused refresh of a known family; a failing audit write does not change the
    /// answer.
    async fn audit_refresh(&self, family: &FamilyRow, outcome: &str) {
        let audit = AuditRow::family(now(), "refresh", family, outcome);
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
        let audit = AuditRow::family(now, "reuse_detected", family, "family_revoked");
        match self
            .inner
            .db
            .revoke_family(&family.family_id, now, "reuse", &audit)
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

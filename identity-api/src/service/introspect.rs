//! Step 3 of PROTOCOL.md section 5, `POST /api/v1/introspect` (RFC 7662): is a token of the
//! bearer's client active, and what does it say. Also how /oauth/introspect finds a token
//! (`oauth`), with other rules of who may see it.

use identity_protocol::identity::{REFRESH_TOKEN_USE, TokenRequest};

use crate::clock::now;
use crate::error::ApiError;
use crate::secret::refresh_token_key;
use crate::storage::{Scope, TenantId};
use crate::tokens::Verified;

use super::answers::Introspection;
use super::callers::{check_subject, looks_like_jwt, presented_token};
use super::state::AppState;

impl AppState {
    /// "`{"active": false}` [...] is also the answer for a spent refresh token and for a token
    /// of another client than the bearer's", and, on a session bound to a subject
    /// (`session_subject`, X-Session-Subject), for a token of another subject. The hint is
    /// optional; the token's shape decides.
    pub async fn introspect(
        &self,
        bearer: &Verified,
        session_subject: Option<&str>,
        req: TokenRequest<'_>,
    ) -> Result<Introspection, ApiError> {
        let token = presented_token(req)?;
        // The rule that refuses another subject's bearer or issue: here it hides the token.
        let visible = |client_id: &str, subject: &str| {
            client_id == bearer.client_id && check_subject(session_subject, subject).is_ok()
        };
        // The bearer's own family was checked a moment ago.
        let answer = self
            .find_active(&token, None, &bearer.tenant, visible, Some(&bearer.fid))
            .await?;
        self.count_introspection(&answer);
        Ok(answer)
    }

    /// What `token` is, if it is active, of `tenant` and `visible(client_id, subject)`: an
    /// access token
    /// unexpired of a family not revoked (`live_family` is known not to be), or a refresh token
    /// unspent and unexpired of a family not revoked. Checked in that order, so that a token
    /// not visible costs no read of its family. With `hint` `refresh_token` the refresh tokens
    /// are searched first; the shapes of the two kinds differ, so the hint never changes the
    /// answer (RFC 7662 section 2.1: the search extends to every kind).
    pub(super) async fn find_active(
        &self,
        token: &str,
        hint: Option<&str>,
        tenant: &TenantId,
        visible: impl Fn(&str, &str) -> bool,
        live_family: Option<&str>,
    ) -> Result<Introspection, ApiError> {
        let refresh_first = hint == Some(REFRESH_TOKEN_USE);
        if refresh_first && let Some(found) = self.active_refresh(token, tenant, &visible).await? {
            return Ok(found);
        }
        if looks_like_jwt(token) {
            return self
                .active_access(token, tenant, &visible, live_family)
                .await;
        }
        if !refresh_first && let Some(found) = self.active_refresh(token, tenant, &visible).await? {
            return Ok(found);
        }
        Ok(Introspection::Inactive)
    }

    async fn active_access(
        &self,
        token: &str,
        tenant: &TenantId,
        visible: &impl Fn(&str, &str) -> bool,
        live_family: Option<&str>,
    ) -> Result<Introspection, ApiError> {
        let now = now();
        let Ok(claims) = self.verify_access_token(token, now).await else {
            return Ok(Introspection::Inactive);
        };
        if claims.exp <= now
            || claims.tenant != *tenant
            || !visible(&claims.client_id, &claims.sub)
            || (live_family != Some(claims.fid.as_str())
                && self.inner.db.family_revoked(tenant, &claims.fid).await? != Some(false))
        {
            return Ok(Introspection::Inactive);
        }
        Ok(Introspection::Access(claims))
    }

    /// `None` when no refresh token is found by `token`; inactive when one is but is not active.
    async fn active_refresh(
        &self,
        token: &str,
        tenant: &TenantId,
        visible: &impl Fn(&str, &str) -> bool,
    ) -> Result<Option<Introspection>, ApiError> {
        let inner = &self.inner;
        let view = match refresh_token_key(token) {
            Some(key) => inner.db.refresh_token(Scope::Tenant(tenant), &key).await?,
            None => None,
        };
        let Some(view) = view else {
            return Ok(None);
        };
        let now = now();
        let f = &view.family;
        if view.token.spent
            || f.revoked_at.is_some()
            || now >= view.token.expires_at
            || now >= f.expires_at
            || !visible(&f.client_id, &f.subject)
        {
            return Ok(Some(Introspection::Inactive));
        }
        let Some(issuer) = self
            .directory()
            .tenant(tenant.as_str())
            .map(|t| t.issuer.clone())
        else {
            return Ok(Some(Introspection::Inactive));
        };
        Ok(Some(Introspection::Refresh {
            view: Box::new(view),
            issuer,
        }))
    }

    pub(super) fn count_introspection(&self, answer: &Introspection) {
        self.inner.metrics.introspection(match answer {
            Introspection::Inactive => "inactive",
            Introspection::Access(_) => "active_access",
            Introspection::Refresh { .. } => "active_refresh",
        });
    }
}

//! Step 3 of PROTOCOL.md section 5, `POST /api/v1/introspect` (RFC 7662): is a token of the
//! bearer's client active, and what does it say.

use identity_protocol::identity::TokenRequest;

use crate::clock::now;
use crate::error::ApiError;
use crate::secret::refresh_token_key;
use crate::tokens::Claims;

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
        bearer: &Claims,
        session_subject: Option<&str>,
        req: TokenRequest<'_>,
    ) -> Result<Introspection, ApiError> {
        // The rule that refuses another subject's bearer or issue: here it hides the token.
        let other_subject = |subject: &str| check_subject(session_subject, subject).is_err();
        let token = presented_token(req)?;
        let now = now();
        let inner = &self.inner;
        let m = &inner.metrics;
        if looks_like_jwt(&token) {
            let Ok(claims) = self.verify_access_token(&token, now).await else {
                m.introspection("inactive");
                return Ok(Introspection::Inactive);
            };
            // The bearer's own family was checked a moment ago.
            if claims.exp <= now
                || claims.client_id != bearer.client_id
                || other_subject(&claims.sub)
                || (claims.fid != bearer.fid
                    && inner.db.family_revoked(&claims.fid).await? != Some(false))
            {
                m.introspection("inactive");
                return Ok(Introspection::Inactive);
            }
            m.introspection("active_access");
            return Ok(Introspection::Access(claims));
        }
        let view = match refresh_token_key(&token) {
            Some(key) => inner.db.refresh_token(&key).await?,
            None => None,
        };
        let Some(view) = view else {
            m.introspection("inactive");
            return Ok(Introspection::Inactive);
        };
        let f = &view.family;
        if view.token.spent
            || f.revoked_at.is_some()
            || now >= view.token.expires_at
            || now >= f.expires_at
            || f.client_id != bearer.client_id
            || other_subject(&f.subject)
        {
            m.introspection("inactive");
            return Ok(Introspection::Inactive);
        }
        m.introspection("active_refresh");
        Ok(Introspection::Refresh {
            view: Box::new(view),
            issuer: inner.settings.issuer.clone(),
        })
    }
}

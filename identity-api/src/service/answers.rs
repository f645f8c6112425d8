//! What the operations answer, serialised as PROTOCOL.md section 5 says.

use std::sync::Arc;

use identity_protocol::identity::{ACCESS_TOKEN_USE, REFRESH_TOKEN_USE};
use serde::Serialize;

use crate::storage::RefreshView;
use crate::tokens::Verified;

/// The answer of introspection (PROTOCOL.md section 5, RFC 7662), serialised from the claims or
/// the stored row it was found by, without building a JSON tree (a map and a copy of every
/// string per answer). Keys in sorted order.
#[derive(Debug)]
pub enum Introspection {
    Inactive,
    Access(Arc<Verified>),
    Refresh {
        view: Box<RefreshView>,
        issuer: String,
    },
}

impl Introspection {
    /// The client of an active token.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Inactive => None,
            Self::Access(claims) => Some(&claims.client_id),
            Self::Refresh { view, .. } => Some(&view.family.client_id),
        }
    }
}

impl Serialize for Introspection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Inactive {
            active: bool,
        }
        #[derive(Serialize)]
        struct Active<'a> {
            active: bool,
            aud: [&'a str; 1],
            client_id: &'a str,
            exp: i64,
            iat: i64,
            iss: &'a str,
            jti: &'a str,
            scope: &'a str,
            sub: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            token_type: Option<&'static str>,
            token_use: &'static str,
        }
        match self {
            Self::Inactive => Inactive { active: false }.serialize(serializer),
            Self::Access(c) => Active {
                active: true,
                aud: [&c.aud],
                client_id: &c.client_id,
                exp: c.exp,
                iat: c.iat,
                iss: &c.iss,
                jti: &c.jti,
                scope: &c.scope,
                sub: &c.sub,
                token_type: Some("Bearer"),
                token_use: ACCESS_TOKEN_USE,
            }
            .serialize(serializer),
            Self::Refresh { view, issuer } => {
                let f = &view.family;
                Active {
                    active: true,
                    aud: [&f.audience],
                    client_id: &f.client_id,
                    exp: view.token.expires_at,
                    iat: view.token.issued_at,
                    iss: issuer,
                    jti: &view.token.jti,
                    scope: &f.scope,
                    sub: &f.subject,
                    token_type: None,
                    token_use: REFRESH_TOKEN_USE,
                }
                .serialize(serializer)
            }
        }
    }
}

/// The answer of token issue and refresh (PROTOCOL.md section 5, and RFC 6749 section 5.1 at
/// /oauth/token, where a client_credentials grant may come without a refresh token).
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<i64>,
    pub scope: String,
}

impl TokenResponse {
    /// A Bearer access token and the refresh token issued with it, if any (and its lifetime);
    /// lifetimes in seconds.
    pub fn new(
        access_token: String,
        expires_in: i64,
        refresh: Option<(&str, i64)>,
        scope: String,
    ) -> Self {
        Self {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh.map(|(token, _)| token.to_owned()),
            refresh_expires_in: refresh.map(|(_, expires_in)| expires_in),
            scope,
        }
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The answer of revocation: `{"revoked": true}`, or `false` for a token that is unknown.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::storage::{FamilyRow, RefreshRow};
    use crate::tokens::Claims;

    /// The same bytes as the answers' JSON trees (sorted keys), without building one.
    #[test]
    fn introspection_answers_serialise_as_their_json_trees() {
        let claims = Claims {
            iss: "https://issuer".into(),
            sub: "user\"1".into(),
            aud: "orders-api".into(),
            client_id: "c1".into(),
            scope: "orders.read orders.write".into(),
            iat: 1_700_000_000,
            exp: 1_700_000_900,
            jti: "j1".into(),
            fid: "f1".into(),
            roles: None,
        };
        let access = json!({
            "active": true, "token_use": "access_token", "token_type": "Bearer",
            "sub": claims.sub, "client_id": claims.client_id, "scope": claims.scope,
            "aud": [claims.aud], "iss": claims.iss, "exp": claims.exp, "iat": claims.iat,
            "jti": claims.jti,
        });
        let family = FamilyRow {
            family_id: "f1".into(),
            client_id: "c1".into(),
            subject: "user\"1".into(),
            scope: "orders.read".into(),
            audience: "orders-api".into(),
            created_at: 1_700_000_000,
            expires_at: 1_702_592_000,
            last_used_at: 1_700_000_000,
            revoked_at: None,
            revoke_reason: None,
            tenant_id: crate::storage::TenantId::primary(),
            roles: None,
        };
        let view = RefreshView {
            token: RefreshRow::new([0; 32], "j2".into(), &family, 1_700_000_100, 1_700_086_500),
            family,
        };
        let f = &view.family;
        let refresh = json!({
            "active": true, "token_use": "refresh_token", "sub": f.subject,
            "client_id": f.client_id, "scope": f.scope, "aud": [f.audience],
            "iss": "https://issuer", "exp": view.token.expires_at, "iat": view.token.issued_at,
            "jti": view.token.jti,
        });
        let cases = [
            (Introspection::Inactive, json!({ "active": false })),
            (
                Introspection::Access(Arc::new(Verified {
                    tenant: crate::storage::TenantId::primary(),
                    claims,
                })),
                access,
            ),
            (
                Introspection::Refresh {
                    issuer: "https://issuer".into(),
                    view: Box::new(view),
                },
                refresh,
            ),
        ];
        for (answer, tree) in cases {
            assert_eq!(
                serde_json::to_string(&answer).unwrap(),
                serde_json::to_string(&tree).unwrap()
            );
        }
    }
}

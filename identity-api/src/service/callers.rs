//! Who is calling: a client by its credentials (`Basic`), or the holder of an access token
//! (`Bearer`), and the subject an authenticated session of the sidecar binds them to.

use std::sync::Arc;

use identity_protocol::identity::{TokenRequest, basic_credentials, bearer_token};
use zeroize::Zeroizing;

use crate::clients;
use crate::clock::{now, now_millis};
use crate::error::ApiError;
use crate::keys::Tenant;
use crate::storage::{ClientRow, Scope, TenantId};
use crate::tokens::{self, TokenError, Verified, VerifiedCache};

use super::state::AppState;

/// What the HTTP layer parsed of a request, or why it could not: the operation decides in which
/// order such errors are answered (a caller is authenticated first).
pub type Parsed<T> = Result<T, ApiError>;

/// Where [`AppState::authenticate_client`] may find the client's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    /// The cache of rows that authenticated recently, else the database.
    CacheOrDatabase,
    /// The database only, as a request's first read. A refusal leaves the cache as it is:
    /// anyone can present a client's id with a wrong secret.
    Database,
    /// The database only, again: before a refusal (4xx) of a request that a cached row let in.
    /// A refusal here shows the cached row is stale, and evicts it.
    Recheck,
}

/// A client that authenticated.
pub struct Authenticated {
    pub row: Arc<ClientRow>,
    /// Its tenant, enabled.
    pub tenant: Arc<Tenant>,
    /// The row came from the cache (read from the database up to `ClientCache::TTL_SECS` ago).
    pub cached: bool,
    /// The verifier of the secret presented: the client's current one, or its previous one
    /// within an overlap. An issue's write checks the client still accepts it.
    pub verifier: [u8; 32],
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("row", &self.row)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}

/// Bearer checks: introspection needs an active token; refresh and revoke accept an expired one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerUse {
    Active,
    MayBeExpired,
}

/// "The identity API refuses with `403 subject_mismatch` [...] any request whose bearer token
/// has another subject, and any token issue for another subject" than the session's.
pub fn check_subject(session_subject: Option<&str>, subject: &str) -> Result<(), ApiError> {
    match session_subject {
        Some(bound) if bound != subject => Err(ApiError::SubjectMismatch),
        _ => Ok(()),
    }
}

pub(super) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The token an introspection or a revocation is about: required, and wiped when done with.
pub(super) fn presented_token(req: TokenRequest<'_>) -> Result<Zeroizing<String>, ApiError> {
    req.token
        .filter(|t| !t.is_empty())
        .map(|t| Zeroizing::new(t.into_owned()))
        .ok_or_else(|| ApiError::invalid_request("token is required"))
}

impl AppState {
    /// `Authorization: Basic b64(client_id:client_secret)`. Unknown client, wrong secret,
    /// disabled client and a previous secret past its overlap take the same path and give the
    /// same answer: a read of the client (a success may come from the client cache instead,
    /// with `from` allowing it) and the comparisons of `clients::accepts` (the current and the
    /// previous verifier, or the dummy in their place). A row cached before a `client disable`,
    /// `rotate-secret` or `update` still authenticates here; the write refuses it, and
    /// the issue asks again with [`ClientSource::Recheck`] before it answers any 4xx, so a
    /// stale row answers nothing but a success. A client of a disabled tenant, or of another
    /// tenant than the one the request `named`, is refused the same way.
    pub async fn authenticate_client(
        &self,
        authorization: Option<&[u8]>,
        from: ClientSource,
        named: Option<&TenantId>,
    ) -> Result<Authenticated, ApiError> {
        let (id, secret) = authorization
            .and_then(basic_credentials)
            .ok_or(ApiError::InvalidClient)?;
        self.authenticate_credentials(&id, &secret, from, named)
            .await
    }

    /// A client id and secret, however they came: the one path of [`Self::authenticate_client`]
    /// (which see), answering [`ApiError::InvalidClient`] for any refusal.
    pub async fn authenticate_credentials(
        &self,
        id: &str,
        secret: &str,
        from: ClientSource,
        named: Option<&TenantId>,
    ) -> Result<Authenticated, ApiError> {
        let inner = &self.inner;
        let computed = clients::verifier(&inner.verifier_key, id, secret);
        let now = now();
        let dummy = &inner.dummy_verifier;
        if from == ClientSource::CacheOrDatabase
            && let Some(row) = inner.clients.get(id, now)
            && row.enabled
            && clients::accepts(Some(&row), &computed, dummy, now)
            && let Some(tenant) = self.credential_tenant(&row.tenant_id, named)
        {
            return Ok(Authenticated {
                row,
                tenant,
                cached: true,
                verifier: computed,
            });
        }
        // An id no client can have (PostgreSQL refuses a NUL in text, for one) is not looked
        // up, but still takes the verifier comparison below, as an unknown client does.
        let row = if clients::valid_client_id(id) {
            inner.db.client(Scope::from(named), id).await?.map(Arc::new)
        } else {
            None
        };
        let accepted = clients::accepts(row.as_deref(), &computed, dummy, now);
        let tenant = row
            .as_ref()
            .and_then(|r| self.credential_tenant(&r.tenant_id, named));
        match (row, tenant) {
            (Some(r), Some(tenant)) if accepted && r.enabled => {
                inner.clients.insert(Arc::clone(&r), now);
                Ok(Authenticated {
                    row: r,
                    tenant,
                    cached: false,
                    verifier: computed,
                })
            }
            _ => {
                // Only a caller the cached row let in is refused on a `Recheck`: the row is
                // stale.
                if from == ClientSource::Recheck {
                    inner.clients.remove(id);
                }
                Err(ApiError::InvalidClient)
            }
        }
    }

    /// A token's claims and tenant, if one of the tenants' keys signed it.
    pub(super) async fn verify_access_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<Verified>, TokenError> {
        let inner = &self.inner;
        let key = VerifiedCache::key(token);
        if let Some(claims) = inner.cache.get(&key, now) {
            return Ok(claims);
        }
        let claims = match tokens::verify(&inner.keys.directory(), token) {
            // A key made by another instance or by `keys rotate`: reload, at most every 200 ms,
            // so that garbage kids cannot turn into a database query each. Boxed, so that the
            // reload's large future is not part of every verification's.
            Err(TokenError::UnknownKey) if self.last_key_reload() + 200 < now_millis() => {
                if let Err(e) = Box::pin(self.reload_keys()).await {
                    tracing::warn!(error = %e, "key reload failed");
                }
                tokens::verify(&inner.keys.directory(), token)
            }
            other => other,
        }?;
        let claims = Arc::new(claims);
        inner.cache.insert(key, claims.clone(), now);
        Ok(claims)
    }

    /// `Authorization: Bearer <access token>`: valid signature and issuer, family not revoked,
    /// not expired when `Active` is asked for, and of the session's subject on an
    /// authenticated session of the sidecar; of the tenant the request `named`, if it named
    /// one, and of an enabled tenant.
    pub async fn authenticate_bearer(
        &self,
        authorization: Option<&[u8]>,
        session_subject: Parsed<Option<&str>>,
        usage: BearerUse,
        named: Option<&TenantId>,
    ) -> Result<Arc<Verified>, ApiError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(ApiError::InvalidToken("missing or malformed bearer token"))?;
        let now = now();
        let claims = self
            .verify_access_token(token, now)
            .await
            .map_err(|_| ApiError::InvalidToken("the bearer token is not valid"))?;
        if usage == BearerUse::Active && claims.exp <= now {
            return Err(ApiError::InvalidToken("the bearer token has expired"));
        }
        if self.credential_tenant(&claims.tenant, named).is_none() {
            return Err(ApiError::InvalidToken(
                "the bearer token is not valid for this tenant",
            ));
        }
        match self
            .inner
            .db
            .family_revoked(&claims.tenant, &claims.fid)
            .await?
        {
            Some(false) => {}
            _ => return Err(ApiError::InvalidToken("the bearer token has been revoked")),
        }
        check_subject(session_subject?, &claims.sub)?;
        Ok(claims)
    }
}

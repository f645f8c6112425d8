//! The application state and the four operations of PROTOCOL.md section 5, independent of HTTP
//! framing (headers and bodies are parsed in `http`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::clients::{self, ClientCache, split_list, valid_scope_token, verifier_matches};
use crate::error::ApiError;
use crate::keys::{self, Keks, KeyError, KeyStore};
use crate::metrics::Metrics;
use crate::secret::{Fresh, InternalToken, Key32, refresh_token_key};
use crate::storage::{
    Audit, ClientRow, Db, FamilyRow, NewRefresh, Opened, RefreshView, Rotation, StoreError,
};
use crate::tokens::{self, Claims, TokenError, VerifiedCache};

/// How long past an access token's lifetime a retired signing key stays in the JWKS: a few
/// reload periods (`serve` reloads the keys every second).
const KEY_RELOAD_SLACK_SECS: i64 = 10;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runtime settings (see `config` for the flags and variables that set them).
#[derive(Debug)]
pub struct Settings {
    /// `iss` of every token, and the base of the URLs in openid-configuration.
    pub issuer: String,
    pub access_ttl: i64,
    pub refresh_ttl: i64,
    pub family_ttl: i64,
    /// When set, /api/v1/* require `X-Internal-Token` equal to it.
    pub internal_token: Option<InternalToken>,
    pub max_body_bytes: usize,
}

impl Settings {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            access_ttl: 900,
            refresh_ttl: 86_400,
            family_ttl: 2_592_000,
            internal_token: None,
            max_body_bytes: 65_536,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    settings: Settings,
    keys: KeyStore,
    verifier_key: Key32,
    /// Compared against when the client is unknown, so that both paths cost the same.
    dummy_verifier: [u8; 32],
    cache: VerifiedCache,
    clients: ClientCache,
    metrics: Metrics,
    last_key_reload: AtomicI64,
}

/// The answer of introspection (PROTOCOL.md section 5, RFC 7662), serialised from the claims or
/// the stored row it was found by, without building a JSON tree (a map and a copy of every
/// string per answer: docs/benchmarks.md section 5f). Keys in sorted order, as before.
#[derive(Debug)]
pub enum Introspection {
    Inactive,
    Access(Arc<Claims>),
    Refresh {
        view: Box<RefreshView>,
        issuer: String,
    },
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
                token_use: "access_token",
            }
            .serialize(serializer),
            Self::Refresh { view, issuer } => {
                let f = &view.family;
                Active {
                    active: true,
                    aud: [&f.audience],
                    client_id: &f.client_id,
                    exp: view.expires_at,
                    iat: view.issued_at,
                    iss: issuer,
                    jti: &view.jti,
                    scope: &f.scope,
                    sub: &f.subject,
                    token_type: None,
                    token_use: "refresh_token",
                }
                .serialize(serializer)
            }
        }
    }
}

/// The answer of token issue and refresh.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub scope: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
pub struct IssueRequest {
    pub subject: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    #[serde(default)]
    pub grant_type: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Deserialize)]
pub struct TokenRequest {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("grant_type", &self.grant_type)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("token_type_hint", &self.token_type_hint)
            .finish_non_exhaustive()
    }
}

/// Where [`AppState::authenticate_client`] may find the client's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    /// The cache of rows that authenticated recently, else the database.
    CacheOrDatabase,
    /// The database only: before a refusal (4xx) of a request that a cached row let in.
    Database,
}

/// A client that authenticated.
#[derive(Debug)]
pub struct Authenticated {
    pub row: Arc<ClientRow>,
    /// The row came from the cache (read from the database up to `ClientCache::TTL_SECS` ago).
    pub cached: bool,
}

/// Bearer checks: introspection needs an active token; refresh and revoke accept an expired one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerUse {
    Active,
    MayBeExpired,
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Section 5: `subject` is 1 to 255 characters and not `-`. Control characters are refused too:
/// the subject ends up in the sidecar's newline-separated signed text.
fn validate_subject(subject: &str) -> Result<(), ApiError> {
    let n = subject.chars().count();
    if n == 0 || n > 255 {
        return Err(ApiError::invalid_request(
            "subject must be 1 to 255 characters",
        ));
    }
    if subject == "-" {
        return Err(ApiError::invalid_request("subject must not be \"-\""));
    }
    if subject.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(
            "subject must not contain control characters",
        ));
    }
    Ok(())
}

fn check_subject(session_subject: Option<&str>, subject: &str) -> Result<(), ApiError> {
    match session_subject {
        Some(bound) if bound != subject => Err(ApiError::SubjectMismatch),
        _ => Ok(()),
    }
}

impl AppState {
    /// Builds the state on a migrated database; creates the first signing key and the
    /// client-secret verifier key if there are none (see [`keys::bootstrap`]).
    pub async fn new(
        db: Db,
        keks: impl Into<Keks>,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let keks = keks.into();
        let verifier_key = keys::bootstrap(&db, &keks).await?;
        let dummy_verifier = clients::verifier(&verifier_key, "", "");
        let metrics = Metrics::new(db.batch_metrics());
        // Another replica may sign with a just-retired key until its next reload (every second):
        // the JWKS keeps a retired key a little longer than an access token lives, so no token
        // outlives its published key.
        let keys = KeyStore::new(
            keks,
            settings.family_ttl,
            settings.access_ttl.saturating_add(KEY_RELOAD_SLACK_SECS),
        );
        let state = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                keys,
                verifier_key,
                dummy_verifier,
                cache: VerifiedCache::default(),
                clients: ClientCache::default(),
                metrics,
                last_key_reload: AtomicI64::new(0),
            }),
        };
        state.reload_keys().await?;
        Ok(state)
    }

    /// Connects, runs the embedded migrations and builds the state.
    pub async fn open(
        url: &str,
        keks: impl Into<Keks>,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let db = Db::connect(url).await?;
        db.migrate().await?;
        Self::new(db, keks, settings).await
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }
    pub fn verifier_key(&self) -> &Key32 {
        &self.inner.verifier_key
    }

    /// Picks up keys rotated by `identity-api keys rotate` or another instance.
    pub async fn reload_keys(&self) -> Result<bool, KeyError> {
        self.inner
            .last_key_reload
            .store(now_millis(), Ordering::Relaxed);
        self.inner.keys.reload(&self.inner.db, now()).await
    }

    /// Seeds `dev-client` for the quick start; returns its secret when it was created now.
    pub async fn seed_dev_client(
        &self,
    ) -> Result<Option<crate::secret::ClientSecret>, clients::ClientError> {
        if self.inner.db.client("dev-client").await?.is_some() {
            return Ok(None);
        }
        match clients::create(
            &self.inner.db,
            &self.inner.verifier_key,
            "dev-client",
            "orders.read orders.write",
            "orders-api",
            now(),
        )
        .await
        {
            Ok(secret) => Ok(Some(secret)),
            Err(clients::ClientError::Exists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- authentication ----

    /// `Authorization: Basic b64(client_id:client_secret)`. Unknown client, wrong secret and
    /// disabled client take the same path and give the same answer: a read of the client (a
    /// success may come from [`ClientCache`] instead, with `from` allowing it) and a comparison
    /// with its verifier. A row cached before a `client disable` or `rotate-secret` still
    /// authenticates here; the issue's write refuses it, and the issue handler asks again with
    /// [`ClientSource::Database`] before it answers any other 4xx, so a stale row answers
    /// nothing but a success.
    pub async fn authenticate_client(
        &self,
        authorization: Option<&[u8]>,
        from: ClientSource,
    ) -> Result<Authenticated, ApiError> {
        let (id, secret) = parse_basic(authorization).ok_or(ApiError::InvalidClient)?;
        let computed = clients::verifier(&self.inner.verifier_key, &id, &secret);
        let now = now();
        if from == ClientSource::CacheOrDatabase
            && let Some(row) = self.inner.clients.get(&id, now)
            && row.enabled
            && verifier_matches(&computed, &row.secret_verifier)
        {
            return Ok(Authenticated { row, cached: true });
        }
        // An id no client can have (PostgreSQL refuses a NUL in text, for one) is not looked
        // up, but still takes the verifier comparison below, as an unknown client does.
        let row = if clients::valid_client_id(&id) {
            self.inner.db.client(&id).await?.map(Arc::new)
        } else {
            None
        };
        let stored: &[u8] = match &row {
            Some(r) => &r.secret_verifier,
            None => &self.inner.dummy_verifier,
        };
        let matches = verifier_matches(&computed, stored);
        match row {
            Some(r) if matches && r.enabled => {
                self.inner.clients.insert(Arc::clone(&r), now);
                Ok(Authenticated {
                    row: r,
                    cached: false,
                })
            }
            _ => {
                // Reached with `Database` only by a caller the cached row let in: it is stale.
                // (Not on the first read: a wrong secret must not evict a client's row.)
                if from == ClientSource::Database {
                    self.inner.clients.remove(&id);
                }
                Err(ApiError::InvalidClient)
            }
        }
    }

    async fn verify_access_token(&self, token: &str, now: i64) -> Result<Arc<Claims>, TokenError> {
        let key = VerifiedCache::key(token);
        if let Some(claims) = self.inner.cache.get(&key, now) {
            return Ok(claims);
        }
        let issuer = &self.inner.settings.issuer;
        let claims = match tokens::verify(&self.inner.keys.ring(), issuer, token) {
            // A key made by another instance or by `keys rotate`: reload, at most every 200 ms,
            // so that garbage kids cannot turn into a database query each.
            Err(TokenError::UnknownKey)
                if self.inner.last_key_reload.load(Ordering::Relaxed) + 200 < now_millis() =>
            {
                if let Err(e) = self.reload_keys().await {
                    tracing::warn!(error = %e, "key reload failed");
                }
                tokens::verify(&self.inner.keys.ring(), issuer, token)
            }
            other => other,
        }?;
        let claims = Arc::new(claims);
        self.inner.cache.insert(key, claims.clone(), now);
        Ok(claims)
    }

    /// `Authorization: Bearer <access token>`: valid signature and issuer, family not revoked,
    /// and not expired when `Active` is asked for.
    pub async fn authenticate_bearer(
        &self,
        authorization: Option<&[u8]>,
        usage: BearerUse,
    ) -> Result<Arc<Claims>, ApiError> {
        let token = parse_bearer(authorization)
            .ok_or(ApiError::InvalidToken("missing or malformed bearer token"))?;
        let now = now();
        let claims = self
            .verify_access_token(token, now)
            .await
            .map_err(|_| ApiError::InvalidToken("the bearer token is not valid"))?;
        if usage == BearerUse::Active && claims.exp <= now {
            return Err(ApiError::InvalidToken("the bearer token has expired"));
        }
        match self.inner.db.family_revoked(&claims.fid).await? {
            Some(false) => Ok(claims),
            _ => Err(ApiError::InvalidToken("the bearer token has been revoked")),
        }
    }

    // ---- step 2: issue ----

    pub async fn issue(
        &self,
        client: &ClientRow,
        req: IssueRequest,
        session_subject: Option<&str>,
    ) -> Result<TokenResponse, ApiError> {
        validate_subject(&req.subject)?;
        check_subject(session_subject, &req.subject)?;
        let allowed = split_list(&client.scopes);
        let scope = match req.scope.as_deref() {
            None => allowed.join(" "),
            Some(requested) => {
                let items = split_list(requested);
                if items.is_empty() {
                    return Err(ApiError::InvalidScope("scope is empty".into()));
                }
                for item in &items {
                    if !valid_scope_token(item) {
                        return Err(ApiError::InvalidScope("scope is malformed".into()));
                    }
                    if !allowed.contains(item) {
                        return Err(ApiError::InvalidScope(format!(
                            "scope {item} is not allowed for this client"
                        )));
                    }
                }
                items.join(" ")
            }
        };
        let audiences = split_list(&client.audiences);
        let audience = match req.audience.as_deref() {
            Some(a) if audiences.contains(&a) => a.to_owned(),
            Some(_) => {
                return Err(ApiError::InvalidTarget(
                    "audience is not allowed for this client".into(),
                ));
            }
            None => match audiences.as_slice() {
                [only] => (*only).to_owned(),
                _ => {
                    return Err(ApiError::invalid_request(
                        "audience is required: the client has several",
                    ));
                }
            },
        };

        let s = &self.inner.settings;
        let now = now();
        let mut fresh = Fresh::draw();
        let family = FamilyRow {
            family_id: fresh.time_ordered_id(),
            client_id: client.client_id.clone(),
            subject: req.subject,
            scope,
            audience,
            created_at: now,
            expires_at: now.saturating_add(s.family_ttl),
            revoked_at: None,
        };
        let (access_token, expires_in) = self.sign_access(&family, now, &mut fresh)?;
        let (refresh, new) = self.new_refresh(&family, now, &mut fresh);
        let refresh_exp = new.expires_at;
        let scope = family.scope.clone();
        let client_id = &client.client_id;
        match self
            .inner
            .db
            .create_family(family, new, &client.secret_verifier)
            .await?
        {
            Opened::Stored => {}
            Opened::ClientChanged => {
                self.inner.clients.remove(client_id);
                tracing::info!(
                    client_id,
                    "issue refused: the client was disabled or its secret rotated meanwhile"
                );
                return Err(ApiError::InvalidClient);
            }
        }
        self.inner.metrics.tokens_issued.inc();
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh.to_string(),
            refresh_expires_in: refresh_exp - now,
            scope,
        })
    }

    /// A new refresh token of `family`: the token, shown once, and what is stored of it.
    fn new_refresh(
        &self,
        family: &FamilyRow,
        now: i64,
        fresh: &mut Fresh,
    ) -> (Zeroizing<String>, NewRefresh) {
        let (token, key) = fresh.refresh_token();
        let new = NewRefresh {
            token_hash: key,
            jti: fresh.id(),
            family_id: family.family_id.clone(),
            issued_at: now,
            expires_at: now
                .saturating_add(self.inner.settings.refresh_ttl)
                .min(family.expires_at),
        };
        (token, new)
    }

    fn sign_access(
        &self,
        family: &FamilyRow,
        now: i64,
        fresh: &mut Fresh,
    ) -> Result<(String, i64), ApiError> {
        let s = &self.inner.settings;
        let exp = now.saturating_add(s.access_ttl).min(family.expires_at);
        let claims = Claims {
            iss: s.issuer.clone(),
            sub: family.subject.clone(),
            aud: family.audience.clone(),
            client_id: family.client_id.clone(),
            scope: family.scope.clone(),
            iat: now,
            exp,
            jti: fresh.id(),
            fid: family.family_id.clone(),
        };
        let token = tokens::sign(&self.inner.keys.ring(), &claims)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        // What verifying this token would give: its first use (a refresh presents it as the
        // bearer) then skips the signature check, which costs more than signing.
        self.inner
            .cache
            .insert(VerifiedCache::key(&token), Arc::new(claims), now);
        Ok((token, exp - now))
    }

    // ---- step 5: refresh ----

    pub async fn refresh(
        &self,
        bearer: &Claims,
        req: RefreshRequest,
    ) -> Result<TokenResponse, ApiError> {
        match req.grant_type.as_deref() {
            None => return Err(ApiError::invalid_request("grant_type is required")),
            Some("refresh_token") => {}
            Some(_) => return Err(ApiError::UnsupportedGrantType),
        }
        let presented = Zeroizing::new(req.refresh_token.unwrap_or_default());
        if presented.is_empty() {
            return Err(ApiError::invalid_request("refresh_token is required"));
        }
        let m = &self.inner.metrics;
        let old_key = refresh_token_key(&presented);
        let Some(view) = self.inner.db.refresh_token(&old_key).await? else {
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
        if view.spent {
            return Err(self.reuse_detected(family).await);
        }
        let now = now();
        if now >= view.expires_at || now >= family.expires_at {
            m.refresh("expired");
            self.audit_refresh(family, "refused_expired").await;
            return Err(ApiError::InvalidGrant("the refresh token has expired"));
        }

        let mut fresh = Fresh::draw();
        let (access_token, expires_in) = self.sign_access(family, now, &mut fresh)?;
        let (refresh, new) = self.new_refresh(family, now, &mut fresh);
        let refresh_exp = new.expires_at;
        let outcome = self
            .inner
            .db
            .rotate_refresh(old_key, new, now, family)
            .await?;
        if outcome == Rotation::Lost {
            // Spent by a concurrent request in the meantime: that is reuse too.
            return Err(self.reuse_detected(family).await);
        }
        m.refresh("rotated");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh.to_string(),
            refresh_expires_in: refresh_exp - now,
            scope: family.scope.clone(),
        })
    }

    /// Audits a refused refresh of a known family; a failing audit write does not change the answer.
    async fn audit_refresh(&self, family: &FamilyRow, outcome: &str) {
        let audit = Audit {
            at: now(),
            event: "refresh",
            client_id: Some(&family.client_id),
            subject: Some(&family.subject),
            family_id: Some(&family.family_id),
            outcome,
        };
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
        let audit = Audit {
            at: now,
            event: "reuse_detected",
            client_id: Some(&family.client_id),
            subject: Some(&family.subject),
            family_id: Some(&family.family_id),
            outcome: "family_revoked",
        };
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

    // ---- step 3: introspect ----

    pub async fn introspect(
        &self,
        bearer: &Claims,
        req: TokenRequest,
    ) -> Result<Introspection, ApiError> {
        let token = Zeroizing::new(
            req.token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ApiError::invalid_request("token is required"))?,
        );
        let _ = req.token_type_hint; // optional; the token's shape decides
        let now = now();
        let m = &self.inner.metrics;
        if looks_like_jwt(&token) {
            let Ok(claims) = self.verify_access_token(&token, now).await else {
                m.introspection("inactive");
                return Ok(Introspection::Inactive);
            };
            // The bearer's own family was checked a moment ago.
            if claims.exp <= now
                || claims.client_id != bearer.client_id
                || (claims.fid != bearer.fid
                    && self.inner.db.family_revoked(&claims.fid).await? != Some(false))
            {
                m.introspection("inactive");
                return Ok(Introspection::Inactive);
            }
            m.introspection("active_access");
            return Ok(Introspection::Access(claims));
        }
        let Some(view) = self
            .inner
            .db
            .refresh_token(&refresh_token_key(&token))
            .await?
        else {
            m.introspection("inactive");
            return Ok(Introspection::Inactive);
        };
        let f = &view.family;
        if view.spent
            || f.revoked_at.is_some()
            || now >= view.expires_at
            || now >= f.expires_at
            || f.client_id != bearer.client_id
        {
            m.introspection("inactive");
            return Ok(Introspection::Inactive);
        }
        m.introspection("active_refresh");
        Ok(Introspection::Refresh {
            view: Box::new(view),
            issuer: self.inner.settings.issuer.clone(),
        })
    }

    // ---- step 6: revoke ----

    pub async fn revoke(&self, bearer: &Claims, req: TokenRequest) -> Result<Value, ApiError> {
        let token = Zeroizing::new(
            req.token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ApiError::invalid_request("token is required"))?,
        );
        let now = now();
        // Any token of a family, also spent, expired or already revoked, names the family.
        let family = if looks_like_jwt(&token) {
            match self.verify_access_token(&token, now).await {
                Ok(claims) => self.inner.db.family(&claims.fid).await?,
                Err(_) => None,
            }
        } else {
            self.inner
                .db
                .refresh_token(&refresh_token_key(&token))
                .await?
                .map(|v| v.family)
        };
        let Some(family) = family else {
            return Ok(json!({ "revoked": false }));
        };
        if family.client_id != bearer.client_id || family.subject != bearer.sub {
            return Err(ApiError::UnauthorizedClient);
        }
        let audit = Audit {
            at: now,
            event: "revoke",
            client_id: Some(&family.client_id),
            subject: Some(&family.subject),
            family_id: Some(&family.family_id),
            outcome: "family_revoked",
        };
        if self
            .inner
            .db
            .revoke_family(&family.family_id, now, "revoked", &audit)
            .await?
        {
            self.inner.metrics.revocations.inc();
        }
        Ok(json!({ "revoked": true }))
    }
}

/// `Basic` (scheme case-insensitive), base64 of `client_id:client_secret`.
fn parse_basic(value: Option<&[u8]>) -> Option<(String, Zeroizing<String>)> {
    let value = std::str::from_utf8(value?).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(rest.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), Zeroizing::new(secret.to_owned())))
}

/// `Bearer <token>` (scheme case-insensitive).
fn parse_bearer(value: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(value?).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes as the JSON tree the answers were built as before (sorted keys).
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
        };
        let access = json!({
            "active": true, "token_use": "access_token", "token_type": "Bearer",
            "sub": claims.sub, "client_id": claims.client_id, "scope": claims.scope,
            "aud": [claims.aud], "iss": claims.iss, "exp": claims.exp, "iat": claims.iat,
            "jti": claims.jti,
        });
        let view = RefreshView {
            jti: "j2".into(),
            issued_at: 1_700_000_100,
            expires_at: 1_700_086_500,
            spent: false,
            family: FamilyRow {
                family_id: "f1".into(),
                client_id: "c1".into(),
                subject: "user\"1".into(),
                scope: "orders.read".into(),
                audience: "orders-api".into(),
                created_at: 1_700_000_000,
                expires_at: 1_702_592_000,
                revoked_at: None,
            },
        };
        let f = &view.family;
        let refresh = json!({
            "active": true, "token_use": "refresh_token", "sub": f.subject,
            "client_id": f.client_id, "scope": f.scope, "aud": [f.audience],
            "iss": "https://issuer", "exp": view.expires_at, "iat": view.issued_at,
            "jti": view.jti,
        });
        let cases = [
            (Introspection::Inactive, json!({ "active": false })),
            (Introspection::Access(Arc::new(claims)), access),
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

    #[test]
    fn basic_and_bearer_parsing() {
        let v = format!("Basic {}", STANDARD.encode("c1:s:ecret"));
        let (id, secret) = parse_basic(Some(v.as_bytes())).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("c1", "s:ecret"));
        let v = format!("bASIC {}", STANDARD.encode("c1:x"));
        assert!(parse_basic(Some(v.as_bytes())).is_some());
        for bad in ["", "Basic", "Basic !!", "Bearer YzE6eA==", "Basic YzE="] {
            assert!(parse_basic(Some(bad.as_bytes())).is_none(), "{bad}");
        }
        assert_eq!(parse_bearer(Some(b"Bearer abc")), Some("abc"));
        assert_eq!(parse_bearer(Some(b"bearer abc")), Some("abc"));
        for bad in ["", "Bearer", "Bearer ", "Basic abc", "abc"] {
            assert!(parse_bearer(Some(bad.as_bytes())).is_none(), "{bad}");
        }
        assert!(parse_bearer(Some(&[0xff, 0xfe])).is_none());
    }

    #[test]
    fn subjects() {
        assert!(validate_subject("test-user").is_ok());
        assert!(validate_subject(&"é".repeat(255)).is_ok());
        for bad in ["", "-", "a\nb", "a\u{0}"] {
            assert!(validate_subject(bad).is_err(), "{bad:?}");
        }
        assert!(validate_subject(&"a".repeat(256)).is_err());
    }
}

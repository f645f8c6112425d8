//! The names of the audit trail's `event` column: what a request did ([`RequestEvent`]) and what
//! an operator changed ([`AdminEvent`]). `audit list --event` accepts these names and no other.

/// The administrative changes the audit trail records, each written in the transaction of the
/// change it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminEvent {
    ClientCreate,
    ClientRotateSecret,
    ClientDisable,
    ClientEnable,
    ClientUpdate,
    KeysRotate,
    KekRewrap,
    TenantCreate,
    TenantDisable,
    TenantEnable,
    UserCreate,
    UserUpdate,
    UserDisable,
    UserEnable,
    UserDelete,
    UserSetPassword,
    UserResetMfa,
    UserUnlock,
    ApiKeyCreate,
    ApiKeyRotate,
    ApiKeyRevoke,
    RoleSet,
    RoleDelete,
}

impl AdminEvent {
    pub const ALL: [Self; 23] = [
        Self::ClientCreate,
        Self::ClientRotateSecret,
        Self::ClientDisable,
        Self::ClientEnable,
        Self::ClientUpdate,
        Self::KeysRotate,
        Self::KekRewrap,
        Self::TenantCreate,
        Self::TenantDisable,
        Self::TenantEnable,
        Self::UserCreate,
        Self::UserUpdate,
        Self::UserDisable,
        Self::UserEnable,
        Self::UserDelete,
        Self::UserSetPassword,
        Self::UserResetMfa,
        Self::UserUnlock,
        Self::ApiKeyCreate,
        Self::ApiKeyRotate,
        Self::ApiKeyRevoke,
        Self::RoleSet,
        Self::RoleDelete,
    ];

    /// The `event` column: the command, in one word.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientCreate => "client_create",
            Self::ClientRotateSecret => "client_rotate_secret",
            Self::ClientDisable => "client_disable",
            Self::ClientEnable => "client_enable",
            Self::ClientUpdate => "client_update",
            Self::KeysRotate => "keys_rotate",
            Self::KekRewrap => "kek_rewrap",
            Self::TenantCreate => "tenant_create",
            Self::TenantDisable => "tenant_disable",
            Self::TenantEnable => "tenant_enable",
            Self::UserCreate => "user_create",
            Self::UserUpdate => "user_update",
            Self::UserDisable => "user_disable",
            Self::UserEnable => "user_enable",
            Self::UserDelete => "user_delete",
            Self::UserSetPassword => "user_set_password",
            Self::UserResetMfa => "user_reset_mfa",
            Self::UserUnlock => "user_unlock",
            Self::ApiKeyCreate => "api_key_create",
            Self::ApiKeyRotate => "api_key_rotate",
            Self::ApiKeyRevoke => "api_key_revoke",
            Self::RoleSet => "role_set",
            Self::RoleDelete => "role_delete",
        }
    }

    /// The `outcome` column: a change is audited only when it is made.
    pub(super) fn outcome(self) -> &'static str {
        match self {
            Self::ClientCreate | Self::TenantCreate | Self::UserCreate | Self::ApiKeyCreate => {
                "created"
            }
            Self::ClientRotateSecret
            | Self::KeysRotate
            | Self::UserSetPassword
            | Self::ApiKeyRotate => "rotated",
            Self::ClientDisable | Self::TenantDisable | Self::UserDisable => "disabled",
            Self::ClientEnable | Self::TenantEnable | Self::UserEnable => "enabled",
            Self::ClientUpdate | Self::UserUpdate | Self::RoleSet => "updated",
            Self::UserDelete | Self::RoleDelete => "deleted",
            Self::ApiKeyRevoke => "revoked",
            Self::UserResetMfa => "reset",
            Self::UserUnlock => "unlocked",
            Self::KekRewrap => "rewrapped",
        }
    }
}

/// What a request did, about a token family or a user's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestEvent {
    Issue,
    Refresh,
    ReuseDetected,
    Revoke,
    Login,
    LoginLockout,
    MfaEnroll,
    MfaConfirm,
    MfaRecoveryCodeUse,
    PasswordRotate,
    ApiKeyRotate,
    ApiKeyValidate,
}

impl RequestEvent {
    pub const ALL: [Self; 12] = [
        Self::Issue,
        Self::Refresh,
        Self::ReuseDetected,
        Self::Revoke,
        Self::Login,
        Self::LoginLockout,
        Self::MfaEnroll,
        Self::MfaConfirm,
        Self::MfaRecoveryCodeUse,
        Self::PasswordRotate,
        Self::ApiKeyRotate,
        Self::ApiKeyValidate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Refresh => "refresh",
            Self::ReuseDetected => "reuse_detected",
            Self::Revoke => "revoke",
            Self::Login => "login",
            Self::LoginLockout => "login_lockout",
            Self::MfaEnroll => "mfa_enroll",
            Self::MfaConfirm => "mfa_confirm",
            Self::MfaRecoveryCodeUse => "mfa_recovery_code_use",
            Self::PasswordRotate => "password_rotate",
            // The same name as the operator's rotation: one event, whoever rotated.
            Self::ApiKeyRotate => AdminEvent::ApiKeyRotate.name(),
            Self::ApiKeyValidate => "api_key_validate",
        }
    }
}

/// Every name the `event` column holds, each once, requests' first.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = RequestEvent::ALL.iter().map(|e| e.name()).collect();
    for name in AdminEvent::ALL.iter().map(|e| e.name()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_names_each_event_once() {
        let request: Vec<_> = RequestEvent::ALL.iter().map(|e| e.name()).collect();
        let admin: Vec<_> = AdminEvent::ALL.iter().map(|e| e.name()).collect();
        for list in [&request, &admin] {
            for (i, name) in list.iter().enumerate() {
                assert!(!list[..i].contains(name), "{name} twice");
            }
        }
        assert_eq!(names().len(), request.len() + admin.len() - 1);
    }
}

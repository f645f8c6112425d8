//! Users of a tenant and their credentials: passwords ([`password`]), TOTP and recovery codes
//! ([`totp`]), API keys ([`api_keys`]), roles ([`roles`]).

pub mod api_keys;
pub mod password;
pub mod roles;
pub mod totp;

//! `cfg(postgres_tests)` when IDENTITY_TEST_POSTGRES_URL is set and `cfg(redis_tests)` when
//! SIDECAR_TEST_REDIS_URL is set: without them the tests that need those servers are marked
//! ignored, so that a run shows them as not run instead of as passed. (The sidecar's build
//! script too.)
fn main() {
    for (var, cfg) in [
        ("IDENTITY_TEST_POSTGRES_URL", "postgres_tests"),
        ("SIDECAR_TEST_REDIS_URL", "redis_tests"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

//! `cfg(postgres_tests)` when IDENTITY_TEST_POSTGRES_URL is set: without it the PostgreSQL tests
//! are marked ignored, so that a run shows them as not run instead of as passed.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rerun-if-env-changed=IDENTITY_TEST_POSTGRES_URL");
    if std::env::var_os("IDENTITY_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }
}

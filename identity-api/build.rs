//! `cfg(postgres_tests)` when IDENTITY_TEST_POSTGRES_URL is set, `cfg(moto_tests)` when
//! IDENTITY_TEST_MOTO_SERVER is: without them the tests that need the server are marked ignored,
//! so that a run shows them as not run instead of as passed.
fn main() {
    for (variable, cfg) in [
        ("IDENTITY_TEST_POSTGRES_URL", "postgres_tests"),
        ("IDENTITY_TEST_MOTO_SERVER", "moto_tests"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var_os(variable).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

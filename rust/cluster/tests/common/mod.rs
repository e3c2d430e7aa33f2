//! One throwaway PostgreSQL per test binary, started by `tests/postgres_server.py` (the
//! same starter as pytest's). The script leaves a watcher that stops the server when this
//! process ends, since a static is never dropped. Tests share it and keep apart by
//! namespace.

use std::process::Command;
use std::sync::OnceLock;

/// Exit status of the starter when PostgreSQL is not installed.
const MISSING: i32 = 3;

/// The server's URL; `None` (the test returns early, saying so) when PostgreSQL is not
/// installed, unless `HOPPER_REQUIRE_POSTGRES=1`, which makes that a failure.
pub fn postgres_url() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL.get_or_init(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/postgres_server.py"
        );
        let out = Command::new("python3")
            .args([
                script,
                "start",
                "--watch-pid",
                &std::process::id().to_string(),
            ])
            .output()
            .expect("python3 runs the PostgreSQL starter");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(MISSING) {
            assert!(
                std::env::var("HOPPER_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "HOPPER_REQUIRE_POSTGRES=1 but {stderr}"
            );
            eprintln!("skipped: {stderr}");
            return None;
        }
        assert!(out.status.success(), "starting PostgreSQL failed: {stderr}");
        let line = String::from_utf8_lossy(&out.stdout);
        let url = line
            .split("\"url\": \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no url in {line}"));
        Some(url.to_string())
    });
    url.as_deref()
}

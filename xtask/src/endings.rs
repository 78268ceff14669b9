//! The `exit-code` and `timeout` cases: how `nanoimg run` ends tells how the guest ended.
//!
//! - `exit-code`: `exit_code.c` prints a line and exits with [`EXIT_CODE`]; the config puts
//!   `debug_exit` in the manifest (`ManifestPassthrough`), so Nanos reports the status
//!   through QEMU's `isa-debug-exit` device and `nanoimg run` must exit with it.
//! - `timeout`: `looper.c` prints `looping` and never ends; `nanoimg run --timeout`
//!   [`TIMEOUT_SECS`] must stop the VM and exit with [`TIMEOUT_STATUS`].

use std::time::Duration;

use serde_json::{json, Value};

/// `exit-code`'s program name; `Program` in the config, so also `argv[0]`.
pub const EXIT_CODE_PROGRAM: &str = "exit_code";

/// The status the `exit-code` program exits with.
pub const EXIT_CODE: i32 = 3;

/// `timeout`'s program name.
pub const TIMEOUT_PROGRAM: &str = "looper";

/// `nanoimg run --timeout` of the `timeout` case.
pub const TIMEOUT_SECS: u64 = 5;

/// `nanoimg run`'s exit status when its `--timeout` stopped the VM (as `timeout(1)`).
pub const TIMEOUT_STATUS: i32 = 124;

/// How much longer than [`TIMEOUT_SECS`] the `timeout` case's `nanoimg run` may take.
pub const TIMEOUT_SLACK: Duration = Duration::from_secs(15);

/// The `exit-code` config: `debug_exit` passed through to the manifest.
pub fn exit_code_config() -> Value {
    json!({
        "Program": EXIT_CODE_PROGRAM,
        "ManifestPassthrough": { "debug_exit": "t" },
    })
}

/// The `timeout` config.
pub fn timeout_config() -> Value {
    json!({ "Program": TIMEOUT_PROGRAM })
}

/// What the `exit-code` program prints.
pub fn exit_code_lines() -> Vec<String> {
    vec![format!("exit-code:exiting with {EXIT_CODE}")]
}

/// What the `timeout` program prints.
pub fn timeout_lines() -> Vec<String> {
    vec!["looping".to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs() {
        assert_eq!(
            exit_code_config(),
            json!({"Program": "exit_code", "ManifestPassthrough": {"debug_exit": "t"}})
        );
        assert_eq!(timeout_config(), json!({"Program": "looper"}));
        assert_eq!(exit_code_lines(), ["exit-code:exiting with 3"]);
        assert_eq!(timeout_lines(), ["looping"]);
    }
}

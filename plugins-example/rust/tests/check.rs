//! Runs the conformance kit (`plugwire check`, docs/conformance.md) on the
//! counter-rust binary that cargo built for this test. Needs node and the
//! host build (`npm run build`); without them it says so and passes.
use std::path::PathBuf;
use std::process::Command;

#[test]
fn plugwire_check_passes() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cli = repo.join("host/dist/src/cli/main.js");
    if !cli.exists() {
        eprintln!("SKIPPED plugwire_check_passes: {} is missing (run `npm ci && npm run build` at the repo root)", cli.display());
        return;
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("SKIPPED plugwire_check_passes: node is not on PATH");
        return;
    }
    let binary = env!("CARGO_BIN_EXE_counter-rust");
    let out = Command::new("node")
        .arg(&cli)
        .args(["check", "--", binary])
        .current_dir(&repo)
        .output()
        .expect("run plugwire check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "plugwire check failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" 0 failed"), "plugwire check reported failures:\n{stdout}");
    assert!(stdout.contains("conformant"), "plugwire check did not say conformant:\n{stdout}");
}

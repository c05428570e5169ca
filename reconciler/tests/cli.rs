//! The binary's options: leader-election settings that would let two replicas act at once
//! are refused before anything connects, with the rule they break and a non-zero exit.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_klt-reconciler"))
        .arg("run")
        .args(args)
        // No cluster: settings must be refused before the client is built.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unsafe_election_timings_are_refused() {
    for (args, rule) in [
        (
            &["--lease-duration", "5", "--lease-renew-deadline", "5"][..],
            "must be shorter than the lease duration",
        ),
        (
            &["--lease-renew-deadline", "1", "--lease-retry-period", "2"][..],
            "must be positive and shorter than the renew deadline",
        ),
        (&["--lease-retry-period", "0"][..], "must be positive"),
        (&["--lease-retry-period=-1"][..], "not a duration"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(stderr.contains(rule), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("kubeconfig"),
            "{args:?}: checked too late: {stderr}"
        );
    }
}

#[test]
fn election_options_are_in_the_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_klt-reconciler"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--leader-election",
        "--lease-name",
        "--lease-namespace",
        "--lease-identity",
        "--lease-duration",
        "--lease-renew-deadline",
        "--lease-retry-period",
        "KLT_RECONCILER_LEASE_DURATION",
    ] {
        assert!(help.contains(opt), "{opt} missing from --help:\n{help}");
    }
}

//! The deployment files agree with the program: the CronJob's command is one
//! the CLI accepts, the image runs that binary as a non-root user, and the
//! cluster's config file validates (its secret files stood in for).

use clap::Parser;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{path}")).unwrap()
}

/// A `key: [...]` flow sequence of the CronJob (written as JSON arrays).
fn array(yaml: &str, key: &str) -> Vec<String> {
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}: [")))
        .unwrap_or_else(|| panic!("no `{key}:` array in the CronJob"));
    serde_json::from_str(
        line.trim_start()
            .trim_start_matches(&format!("{key}:"))
            .trim(),
    )
    .unwrap()
}

#[test]
fn the_cronjob_runs_a_command_the_cli_accepts_in_the_image() {
    let cronjob = read("deploy/k8s/cronjob.yaml");
    let command = array(&cronjob, "command");
    let args = array(&cronjob, "args");
    assert_eq!(command, ["tokenledger"]);
    let argv: Vec<&str> = command.iter().chain(&args).map(String::as_str).collect();
    tokenledger::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    for required in [
        "concurrencyPolicy: Forbid",
        "timeZone:",
        "startingDeadlineSeconds:",
        "backoffLimit:",
        "activeDeadlineSeconds:",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "emptyDir:",
        "secretName: tokenledger-s3",
        "secretName: tokenledger-smtp",
    ] {
        assert!(cronjob.contains(required), "the CronJob lacks `{required}`");
    }
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(
            "COPY --from=build /src/target/release/tokenledger /usr/local/bin/tokenledger"
        )
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"tokenledger\"]"));
    assert!(dockerfile.contains("USER 10001:10001"));
    let kustomization = read("deploy/k8s/kustomization.yaml");
    assert!(
        kustomization.contains("- cronjob.yaml") && kustomization.contains("- tokenledger.toml")
    );
}

#[test]
fn the_cluster_config_validates() {
    // The mounted secrets, stood in for by files.
    let secrets = tempfile::tempdir().unwrap();
    for (dir, file) in [
        ("s3", "access_key_id"),
        ("s3", "secret_access_key"),
        ("smtp", "password"),
    ] {
        std::fs::create_dir_all(secrets.path().join(dir)).unwrap();
        std::fs::write(secrets.path().join(dir).join(file), "not-a-secret").unwrap();
    }
    let text = read("deploy/k8s/tokenledger.toml")
        .replace("/var/run/secrets", &secrets.path().to_string_lossy());
    let config = tokenledger::config::Config::from_sources(
        &text,
        "deploy/k8s/tokenledger.toml",
        &[],
        &tokenledger::config::Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.lake.as_str(), "s3://llm-lake/prod");
    assert!(config.mail.enabled());
}

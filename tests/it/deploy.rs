//! The deployment files agree with the program: the CronJob's command is one
//! the CLI accepts, the image runs that binary as a non-root user under one
//! image name everywhere, the Job retries exactly the exit codes a retry can
//! fix, and the cluster's config file validates (its secret files stood in
//! for).

use clap::Parser;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{path}")).unwrap()
}

/// A `key: [...]` flow sequence of the CronJob (written as JSON arrays).
fn array(yaml: &str, key: &str) -> Vec<String> {
    array_after(yaml, "", key)
        .into_iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
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
        "secretName: tokenledger-smtp",
        "serviceAccountName: tokenledger",
        "automountServiceAccountToken: false",
        "ephemeral-storage:",
        "type: DisruptionTarget",
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
    for file in [
        "cronjob.yaml",
        "serviceaccount.yaml",
        "networkpolicy.yaml",
        "tokenledger.toml",
    ] {
        assert!(
            kustomization.contains(&format!("- {file}")),
            "kustomization.yaml does not list {file}"
        );
    }
}

/// The values of the first `key: [...]` flow sequence after `after`.
fn array_after(yaml: &str, after: &str, key: &str) -> Vec<serde_json::Value> {
    let start = yaml
        .find(after)
        .unwrap_or_else(|| panic!("no `{after}` in the CronJob"));
    let line = yaml[start..]
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}: [")))
        .unwrap_or_else(|| panic!("no `{key}:` array after `{after}`"));
    serde_json::from_str(
        line.trim_start()
            .trim_start_matches(&format!("{key}:"))
            .trim(),
    )
    .unwrap()
}

#[test]
fn the_job_retries_only_the_exit_codes_a_retry_can_fix() {
    use tokenledger::error::ExitKind;
    let cronjob = read("deploy/k8s/cronjob.yaml");
    let fail_job: Vec<u64> = array_after(&cronjob, "action: FailJob", "values")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let final_codes: Vec<u64> = ExitKind::ALL
        .iter()
        .filter(|k| **k != ExitKind::Ok && !k.retry_may_help())
        .map(|k| u64::from(k.code()))
        .collect();
    assert_eq!(fail_job, final_codes);
    // The three: configuration, input and lease are never retried.
    for code in [2, 3, 8] {
        assert!(fail_job.contains(&code), "exit {code} would be retried");
    }
    assert!(cronjob.contains("operator: In") && cronjob.contains("containerName: tokenledger"));
}

/// Requests and limits of the container's `resources`, as written.
fn resource(yaml: &str, section: &str, name: &str) -> String {
    let start = yaml.find(&format!("{section}:")).unwrap();
    yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim_end().ends_with("s:") || l.contains(name))
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {section}.{name} in the CronJob"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn cpu_and_spill_are_requested_and_limited() {
    let cronjob = read("deploy/k8s/cronjob.yaml");
    // A CPU limit, so cgroup cpu.max sets run.threads (config::cgroup_cpu_millis).
    let cpu = resource(&cronjob, "limits", "cpu");
    assert_eq!(cpu, resource(&cronjob, "requests", "cpu"));
    let millis: u64 = match cpu.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => cpu.parse::<u64>().unwrap() * 1000,
    };
    assert_eq!(tokenledger::config::threads_for_cpu_millis(millis), 2);
    // The spill emptyDir fits inside the ephemeral-storage limit.
    let gib = |s: &str| s.strip_suffix("Gi").unwrap().parse::<u64>().unwrap();
    let spill = cronjob
        .lines()
        .find_map(|l| l.trim().strip_prefix("sizeLimit: "))
        .unwrap();
    assert!(gib(spill) < gib(&resource(&cronjob, "limits", "ephemeral-storage")));
    assert!(gib(&resource(&cronjob, "requests", "ephemeral-storage")) > 0);
}

#[test]
fn one_image_name_across_readme_dockerfile_and_manifests() {
    let image = "ghcr.io/example/tokenledger";
    let cronjob = read("deploy/k8s/cronjob.yaml");
    assert!(cronjob.contains(&format!("image: {image}:0.1.0")));
    assert!(read("deploy/k8s/kustomization.yaml").contains(&format!("- name: {image}")));
    assert!(read("Dockerfile").contains(&format!("docker build -t {image}:0.1.0 .")));
    let readme = read("README.md");
    assert!(readme.contains(&format!("docker build -t {image}:0.1.0 .")));
    // No other image name anywhere they are named.
    for (file, text) in [("README.md", &readme), ("cronjob.yaml", &cronjob)] {
        for l in text.lines() {
            if let Some(rest) = l
                .split("docker build -t ")
                .nth(1)
                .or(l.trim().strip_prefix("image: "))
            {
                assert!(rest.starts_with(image), "{file}: another image name: {l}");
            }
        }
    }
}

#[test]
fn the_cluster_config_validates() {
    // The mounted secrets, stood in for by files.
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("smtp")).unwrap();
    std::fs::write(secrets.path().join("smtp/password"), "not-a-secret").unwrap();
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
    // Workload identity: no static keys in the cluster's config.
    assert!(config.s3.credentials.is_none());
}

/// The distributed overlay: the workers run a command the CLI accepts on
/// the port the Service, the NetworkPolicies and the CronJob's
/// `workers_dns` name; the cluster config with that variable validates into
/// a distributed engine; only the job's pods may reach the workers.
#[test]
fn the_distributed_overlay_agrees_with_the_cli_and_itself() {
    let overlay = read("deploy/k8s/distributed/kustomization.yaml");
    let deployment = read("deploy/k8s/distributed/worker-deployment.yaml");
    let service = read("deploy/k8s/distributed/worker-service.yaml");
    let policy = read("deploy/k8s/distributed/worker-networkpolicy.yaml");
    for file in [
        "../",
        "worker-deployment.yaml",
        "worker-service.yaml",
        "worker-networkpolicy.yaml",
    ] {
        assert!(
            overlay.contains(&format!("- {file}")),
            "overlay lacks {file}"
        );
    }
    let command = array(&deployment, "command");
    let args = array(&deployment, "args");
    let argv: Vec<&str> = command.iter().chain(&args).map(String::as_str).collect();
    tokenledger::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(&args[..3], ["worker", "--listen", "0.0.0.0:50051"]);
    assert!(deployment.contains("containerPort: 50051"));
    assert!(deployment.contains("serviceAccountName: tokenledger\n"));
    assert!(deployment.contains("image: ghcr.io/example/tokenledger:0.1.0"));
    assert!(service.contains("clusterIP: None") && service.contains("port: 50051"));
    // Ingress only from the CronJob's pods, on the worker port.
    let ingress = &policy[policy.find("ingress:").unwrap()..policy.find("egress:").unwrap()];
    assert!(ingress.contains("app.kubernetes.io/name: tokenledger\n"));
    assert!(ingress.contains("port: 50051"));
    // The job resolves the Service and may connect to it.
    assert!(overlay.contains("name: TOKENLEDGER_ENGINE__WORKERS_DNS"));
    assert!(overlay.contains("value: tokenledger-worker:50051"));
    assert!(overlay.contains("app.kubernetes.io/name: tokenledger-worker"));
    // The patched paths exist in the base.
    let cronjob = read("deploy/k8s/cronjob.yaml");
    assert!(cronjob.contains("          containers:\n            - name: tokenledger\n"));
    assert!(cronjob.contains("              env:\n"));
    assert!(read("deploy/k8s/networkpolicy.yaml").contains("  egress:\n"));

    // The cluster config plus the overlay's variable: a distributed engine.
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("smtp")).unwrap();
    std::fs::write(secrets.path().join("smtp/password"), "not-a-secret").unwrap();
    let text = read("deploy/k8s/tokenledger.toml")
        .replace("/var/run/secrets", &secrets.path().to_string_lossy());
    let env = [(
        "TOKENLEDGER_ENGINE__WORKERS_DNS".to_string(),
        "tokenledger-worker:50051".to_string(),
    )];
    let config = tokenledger::config::Config::from_sources(
        &text,
        "deploy/k8s/tokenledger.toml",
        &env,
        &tokenledger::config::Overrides::default(),
    )
    .unwrap();
    assert!(config.engine.is_distributed());
    assert_eq!(
        config.engine.workers_dns,
        Some(("tokenledger-worker".to_string(), 50051))
    );
}

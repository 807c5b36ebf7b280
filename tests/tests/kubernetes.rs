//! The Kubernetes manifests: valid against the Kubernetes schemas (kubernetes-validate
//! --strict, from PyPI in the project's virtual environment), rendered by `kubectl kustomize`
//! where kubectl is installed, and unprivileged: exactly the README's capabilities, a
//! read-only root, probes on /healthz, requests and limits.
use serde::Deserialize as _;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// kubernetes-validate --strict on `file`; panics with its report when a resource fails.
fn validate(file: &Path) {
    let validator =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/kubernetes-validate");
    let out = Command::new(&validator)
        .arg("--strict")
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo xtask setup installs kubernetes-validate there)",
                validator.display()
            )
        });
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {report}", file.display());
    assert!(report.contains("passed"), "{report}");
}

fn documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_schemas() {
    let kustomization: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let resources = kustomization["resources"].as_sequence().unwrap();
    assert_eq!(resources.len(), 4);
    for resource in resources {
        validate(&deploy().join(resource.as_str().unwrap()));
    }
    // The check can fail: a field the schema does not know is refused.
    let wrong = std::env::temp_dir().join(format!("netmon-wrong-{}.yaml", std::process::id()));
    let daemonset = std::fs::read_to_string(deploy().join("daemonset.yaml")).unwrap();
    std::fs::write(
        &wrong,
        daemonset.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
    )
    .unwrap();
    let refused = std::panic::catch_unwind(|| validate(&wrong));
    std::fs::remove_file(&wrong).unwrap();
    assert!(refused.is_err(), "a misspelt field passed");

    // Rendered as an operator applies it.
    match Command::new("kubectl")
        .args(["kustomize"])
        .arg(deploy())
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rendered =
                std::env::temp_dir().join(format!("netmon-rendered-{}.yaml", std::process::id()));
            std::fs::write(&rendered, &out.stdout).unwrap();
            validate(&rendered);
            std::fs::remove_file(&rendered).unwrap();
            let kinds: Vec<String> = documents(&String::from_utf8_lossy(&out.stdout))
                .iter()
                .map(|d| {
                    format!(
                        "{}/{}",
                        d["kind"].as_str().unwrap(),
                        d["metadata"]["namespace"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            assert_eq!(
                kinds,
                [
                    "Namespace/-",
                    "ServiceAccount/netmon",
                    "ConfigMap/netmon",
                    "Service/netmon",
                    "DaemonSet/netmon"
                ]
            );
        }
        Err(e) => eprintln!("kubectl is not installed ({e}): the kustomization was not rendered"),
    }
}

#[test]
fn the_daemonset_is_unprivileged_and_sized() {
    let text = std::fs::read_to_string(deploy().join("daemonset.yaml")).unwrap();
    let daemonset: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    let list = |v: &serde_yaml::Value| -> Vec<String> {
        let mut items: Vec<String> = v
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        items.sort();
        items
    };
    assert_eq!(list(&security["capabilities"]["drop"]), ["ALL"]);
    // Exactly the capabilities the README lists.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let added = list(&security["capabilities"]["add"]);
    let mut listed: Vec<String> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("| `CAP_"))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap()
                .split(',')
                .map(|c| {
                    c.trim()
                        .trim_matches('`')
                        .trim_start_matches("CAP_")
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    listed.sort();
    assert_eq!(added, listed);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].as_str().is_some(),
                "{kind}.{resource}"
            );
        }
    }
    assert!(!text.contains("privileged: true"));
}

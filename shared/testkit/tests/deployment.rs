//! The deployment files agree with the code: the environment variables in the README,
//! docker compose, Kubernetes and ECS are ones the binaries read (and the README lists
//! every one of them), and the dashboard and alert rules query metrics the services
//! really export.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use service_runtime::config::Env;
use store_event::EventType;

/// Variables read by libraries, or before the configuration is, rather than by our
/// configuration code.
const READ_ELSEWHERE: [&str; 5] = [
    service_runtime::process::BACKTRACE_VAR, // read before the runtime starts
    "RUST_LOG",                              // tracing-subscriber's filter
    "AWS_ACCESS_KEY_ID",                     // the AWS default credential chain
    "AWS_SECRET_ACCESS_KEY",                 // the AWS default credential chain
    "HOSTNAME",                              // the StatefulSet ordinal (read when CONSUMER_INSTANCES is set)
];

fn accepted() -> BTreeSet<String> {
    // The defaults, with an (empty) set of API keys (PRODUCER_AUTH=api-keys needs one) and
    // Iceberg among the formats (its settings are read only then), then with Glue and with
    // S3 Tables.
    let env = Env::from_pairs([("PRODUCER_API_KEYS", r#"{"keys": []}"#), ("OUTPUT_FORMATS", "json,iceberg")]);
    producer::ProducerConfig::from_env(&env).expect("producer defaults");
    for event_type in EventType::ALL {
        store_consumer::ConsumerConfig::from_env(&env, event_type).expect("consumer defaults");
    }
    let mut names = env.asked();
    // Each catalog's own settings are read only when it is the one chosen.
    let glue = Env::from_pairs([("OUTPUT_FORMATS", "iceberg"), ("ICEBERG_CATALOG", "glue")]);
    store_consumer::ConsumerConfig::from_env(&glue, EventType::Sale).expect("consumer with Glue");
    names.extend(glue.asked());
    let s3tables = Env::from_pairs([
        ("OUTPUT_FORMATS", "iceberg"),
        ("ICEBERG_CATALOG", "s3tables"),
        ("ICEBERG_S3TABLES_BUCKET_ARN", "arn:aws:s3tables:us-east-1:123456789012:bucket/store-events"),
    ]);
    store_consumer::ConsumerConfig::from_env(&s3tables, EventType::Sale).expect("consumer with S3 Tables");
    names.extend(s3tables.asked());
    names.extend(READ_ELSEWHERE.iter().map(|s| (*s).to_owned()));
    names
}

fn read(path: &str) -> String {
    let full = testkit::repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn yaml_documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            value.apply_merge().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            value
        })
        .collect()
}

fn keys(value: &serde_yaml::Value) -> Vec<String> {
    value.as_mapping().map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Variables our services are given in docker-compose.yml.
fn compose_vars() -> BTreeSet<String> {
    let docs = yaml_documents(&testkit::repo_root().join("docker-compose.yml"));
    let services = &docs[0]["services"];
    ["producer", "sales-consumer", "inventory-consumer"]
        .iter()
        .flat_map(|s| keys(&services[*s]["environment"]))
        .collect()
}

/// Variables our containers are given in k8s/: the shared ConfigMap, the containers of
/// our image, and the generated S3 secret.
fn kubernetes_vars() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut files = Vec::new();
    for dir in ["k8s/base", "k8s/overlays/local", "k8s/overlays/msk"] {
        for entry in
            std::fs::read_dir(testkit::repo_root().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}")).flatten()
        {
            files.push(entry.path());
        }
    }
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        for doc in yaml_documents(file) {
            if doc["kind"] == "ConfigMap" && doc["metadata"]["name"] == "store-events" {
                vars.extend(keys(&doc["data"]));
            }
            for generated in doc["secretGenerator"].as_sequence().into_iter().flatten() {
                for literal in generated["literals"].as_sequence().into_iter().flatten() {
                    vars.extend(literal.as_str().and_then(|l| l.split_once('=')).map(|(k, _)| k.to_owned()));
                }
            }
            let containers = doc["spec"]["template"]["spec"]["containers"].as_sequence().cloned().unwrap_or_default();
            for container in containers.iter().filter(|c| c["image"] == "store-events") {
                for env in container["env"].as_sequence().into_iter().flatten() {
                    vars.extend(env["name"].as_str().map(str::to_owned));
                }
            }
        }
    }
    vars
}

/// Variables in the ECS task definitions.
fn ecs_vars() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    for service in ["producer", "sales-consumer", "inventory-consumer"] {
        let task: serde_json::Value = serde_json::from_str(&read(&format!("deploy/ecs/{service}.json")))
            .unwrap_or_else(|e| panic!("deploy/ecs/{service}.json: {e}"));
        for env in task["containerDefinitions"][0]["environment"].as_array().into_iter().flatten() {
            vars.extend(env["name"].as_str().map(str::to_owned));
        }
    }
    vars
}

/// Variables in the README's configuration table: the `NAME`s in the first cell of rows
/// that start with one.
fn readme_vars() -> BTreeSet<String> {
    let is_name =
        |name: &str| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    read("README.md")
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('|').nth(1).map(str::to_owned))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .filter(|name| is_name(name))
        .collect()
}

#[test]
fn the_readme_lists_exactly_the_variables_the_binaries_read() {
    let accepted = accepted();
    let readme = readme_vars();
    let missing: Vec<_> = accepted.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&accepted).collect();
    assert!(missing.is_empty() && unknown.is_empty(), "README misses {missing:?}, lists unknown {unknown:?}");
}

#[test]
fn compose_kubernetes_and_ecs_set_only_variables_the_binaries_read() {
    let accepted = accepted();
    for (place, vars) in
        [("docker-compose.yml", compose_vars()), ("k8s/", kubernetes_vars()), ("deploy/ecs/", ecs_vars())]
    {
        assert!(vars.len() >= 5, "{place}: too few variables found ({vars:?}): is the parser still right?");
        let unknown: Vec<_> = vars.difference(&accepted).collect();
        assert!(unknown.is_empty(), "{place} sets variables no binary reads: {unknown:?}");
    }
}

/// Metric names in PromQL: identifiers outside label matchers and grouping clauses that
/// are not followed by `(` (functions) and contain `_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_braces = 0;
    let mut in_grouping = false;
    let mut after_by = false;
    let mut token = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            token.push(c);
            continue;
        }
        if !token.is_empty() {
            let is_name = in_braces == 0
                && !in_grouping
                && c != '('
                && token.contains('_')
                && !token.starts_with(|t: char| t.is_ascii_digit());
            if is_name {
                names.insert(token.clone());
            }
            after_by = token == "by" || token == "without";
            token.clear();
        }
        match c {
            '{' => in_braces += 1,
            '}' => in_braces -= 1,
            '(' if after_by => in_grouping = true,
            ')' => in_grouping = false,
            ' ' => {}
            _ => after_by = false,
        }
    }
    names
}

fn exported() -> BTreeSet<String> {
    let registry = prometheus::Registry::new();
    let _ = producer::metrics::Metrics::new(&registry);
    let _ = store_consumer::metrics::Metrics::new(&registry);
    let _ = store_consumer::lake::LakeMetrics::new(&registry);
    let _ = service_runtime::readiness::Readiness::new(&registry, std::time::Duration::from_secs(1));
    service_runtime::metrics::registered_names()
}

fn check_queries(place: &str, exprs: Vec<String>) {
    let exported = exported();
    assert!(!exprs.is_empty(), "{place}: no queries found");
    for expr in exprs {
        for name in metric_names(&expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name.clone(), |n, s| n.strip_suffix(s).unwrap_or(&n).to_owned());
            let known = exported.contains(&name) || exported.contains(&base) || name.starts_with("process_");
            assert!(known, "{place}: {name} in {expr:?} is not a metric the services export");
        }
    }
}

#[test]
fn the_dashboard_queries_metrics_the_services_export() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/store-events.json")).expect("the dashboard is not JSON");
    let exprs = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    check_queries("dashboard", exprs);
}

#[test]
fn the_alert_rules_query_metrics_the_services_export() {
    let docs = yaml_documents(&testkit::repo_root().join("deploy/prometheus/alerts.yml"));
    let exprs = docs[0]["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| r["expr"].as_str().map(str::to_owned))
        .collect();
    check_queries("alerts", exprs);
}

#[test]
fn the_kubernetes_prometheus_rule_has_the_same_alerts_as_compose() {
    let compose = yaml_documents(&testkit::repo_root().join("deploy/prometheus/alerts.yml"));
    let operator = yaml_documents(&testkit::repo_root().join("k8s/components/monitoring/prometheusrule.yaml"));
    assert_eq!(operator[0]["spec"]["groups"], compose[0]["groups"], "regenerate prometheusrule.yaml from alerts.yml");
}

#[test]
fn the_promql_name_reader_skips_functions_labels_and_groupings() {
    let expr = "histogram_quantile(0.99, sum by (job, le) (rate(consumer_s3_request_duration_seconds_bucket{job=\"a_b\"}[5m])))";
    assert_eq!(metric_names(expr), BTreeSet::from(["consumer_s3_request_duration_seconds_bucket".to_owned()]));
    assert_eq!(
        metric_names("increase(a_total[5m]) > 0 or b_up == 0"),
        BTreeSet::from(["a_total".to_owned(), "b_up".to_owned()])
    );
}

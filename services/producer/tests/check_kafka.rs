//! `producer check-kafka` with AWS_MSK_IAM and the credentials an EKS pod gets from IRSA:
//! a web-identity token file and a role ARN, exchanged with STS for session credentials.
//! STS is a small local stand-in here (the test cannot reach AWS); Kafka is the real local
//! broker, whose OAUTHBEARER listener checks tokens as JWTs and so turns the MSK token
//! away: the command must sign with the STS credentials and then name that refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: a panic is how a test fails")]

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use testkit::secured;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/store-events-producer";
const STS_KEY: &str = "ASIAIRSAEXAMPLE";

/// Answers AssumeRoleWithWebIdentity the way STS does; keeps every request body.
async fn fake_sts(bodies: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let answer = format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{STS_KEY}</AccessKeyId>
      <SecretAccessKey>irsa-secret-key</SecretAccessKey>
      <SessionToken>irsa-session-token</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/store-events-producer/check</Arn>
      <AssumedRoleId>AROAEXAMPLE:check</AssumedRoleId>
    </AssumedRoleUser>
    <SubjectFromWebIdentityToken>system:serviceaccount:store-events:producer</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
    );
    let app = Router::new().route(
        "/",
        post(move |body: String| {
            let (bodies, answer) = (Arc::clone(&bodies), answer.clone());
            async move {
                if let Ok(mut bodies) = bodies.lock() {
                    bodies.push(body);
                }
                ([("content-type", "text/xml")], answer)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msk_iam_signs_with_irsa_credentials_and_names_the_refusal() {
    testkit::require_kafka();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sts = fake_sts(Arc::clone(&bodies)).await;
    let token_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("irsa-web-identity-token");
    let web_identity = "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.signature";
    std::fs::write(&token_file, web_identity).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_producer"));
    command.arg("check-kafka");
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        command.env_remove(name);
    }
    command.envs([
        ("PRODUCER_AUTH", "none"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ROLE_ARN", ROLE_ARN),
        ("AWS_ROLE_SESSION_NAME", "check"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file.to_string_lossy()),
        ("AWS_ENDPOINT_URL_STS", &sts),
        ("KAFKA_BOOTSTRAP_SERVERS", secured::OAUTH),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
        ("RUST_LOG", "error"),
    ]);
    let output =
        tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("producer check-kafka did not run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    assert!(
        stdout.contains(&format!("AWS_MSK_IAM: token for eu-west-1 signed with access key {STS_KEY}")),
        "the token was not signed with the credentials STS gave for the web identity:\n{report}"
    );
    assert!(stdout.contains("authentication: the broker rejected the token"), "{report}");
    assert_eq!(output.status.code(), Some(1), "{report}");
    let bodies = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies.len(), 1, "one STS call: the token is cached across connection attempts: {bodies:?}");
    let body = &bodies[0];
    for expected in [
        "Action=AssumeRoleWithWebIdentity",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fstore-events-producer",
        "RoleSessionName=check",
        &format!("WebIdentityToken={web_identity}"),
    ] {
        assert!(body.contains(expected), "STS request lacks {expected}: {body}");
    }
}

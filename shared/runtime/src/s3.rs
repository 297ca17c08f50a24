//! The S3 client: AWS's default credential chain (environment, profile, IRSA web
//! identity, ECS task role), a region, and for local servers a custom endpoint with
//! path-style addressing. Every operation has a deadline.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use futures::future::BoxFuture;

use crate::config::{ConfigError, Env};
use crate::readiness::Check;

/// Where events are stored (`S3_*` and `AWS_REGION` variables).
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `S3_BUCKET`: the bucket.
    pub bucket: String,
    /// `S3_PREFIX`: a key prefix under which everything is written (empty: bucket root).
    pub prefix: String,
    /// `S3_ENDPOINT`: a custom endpoint such as `http://127.0.0.1:9000`; unset on AWS.
    pub endpoint: Option<String>,
    /// `S3_FORCE_PATH_STYLE`: `bucket` in the path instead of the host name (local servers).
    pub force_path_style: bool,
    /// `AWS_REGION`: unset means the default chain's region, else `us-east-1`.
    pub region: Option<String>,
    /// `S3_REQUEST_TIMEOUT`: the longest one S3 operation, retries included, may take.
    pub request_timeout: Duration,
}

impl S3Settings {
    /// Reads and checks the settings.
    pub fn from_env(env: &Env) -> Result<S3Settings, ConfigError> {
        let bucket = env.string("S3_BUCKET", "store-events");
        if !(3..=63).contains(&bucket.len())
            || !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(ConfigError::new(
                "S3_BUCKET",
                format!("{bucket:?} is not a bucket name: use 3 to 63 lowercase letters, digits, '-' or '.'"),
            ));
        }
        let prefix = env.string("S3_PREFIX", "").trim_matches('/').to_owned();
        // Keys are also how the consumers name objects elsewhere (`s3://bucket/key`): a
        // prefix written as a URL would send every object to the bucket it names.
        if prefix.contains("://") {
            return Err(ConfigError::new(
                "S3_PREFIX",
                format!("{prefix:?} is a URL: give the key prefix inside S3_BUCKET (e.g. store-events/prod)"),
            ));
        }
        let endpoint = env.raw("S3_ENDPOINT").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new("S3_ENDPOINT", format!("{endpoint:?} must start with http:// or https://")));
        }
        let force_path_style = env.flag("S3_FORCE_PATH_STYLE", false)?;
        let region = env.raw("AWS_REGION").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let request_timeout = env.duration("S3_REQUEST_TIMEOUT", Duration::from_secs(30))?;
        Ok(S3Settings { bucket, prefix, endpoint, force_path_style, region, request_timeout })
    }

    /// `key` under the configured prefix.
    pub fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }
}

/// Builds the client. Credentials come from the default chain; nothing secret is logged.
pub async fn client(settings: &S3Settings) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(settings.force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(settings.request_timeout / 2)
                .operation_timeout(settings.request_timeout)
                .build(),
        );
    if shared.region().is_none() {
        config = config.region(aws_config::Region::new("us-east-1"));
    }
    if let Some(endpoint) = &settings.endpoint {
        config = config.endpoint_url(endpoint.clone());
    }
    Client::from_conf(config.build())
}

/// Formats an SDK error with its service code and message, which `Display` hides.
pub fn describe<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message"))
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        // The request never left: no credentials, or nothing answering at the endpoint.
        // The connector's own text is a bare kind ("other", "io"); the cause chain says why.
        SdkError::DispatchFailure(failure) => {
            let chain = failure.as_connector_error().map(|c| crate::error_chain(c)).unwrap_or_default();
            // One line: the credential chain lists what it attempted over several.
            let chain = chain.split_whitespace().collect::<Vec<_>>().join(" ");
            if chain.contains("credentials") {
                format!(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role \
                     (IRSA, ECS task role); locally, `source scripts/local.env` ({chain})"
                )
            } else {
                format!("cannot reach S3 (S3_ENDPOINT, AWS_REGION): {chain}")
            }
        }
        other => std::error::Error::source(other).map_or_else(|| other.to_string(), |s| format!("{other}: {s}")),
    }
}

/// A failed S3 request: what was asked (`PUT`, `GET`, `HEAD`, `LIST`), of which key or
/// prefix, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {key}: {reason}")]
pub struct S3Error {
    /// The request.
    pub operation: &'static str,
    /// The key, or the prefix of a listing.
    pub key: String,
    /// Why it failed, in one line.
    pub reason: String,
}

impl S3Error {
    /// `operation` on `key` failed because of `reason`.
    pub fn new(operation: &'static str, key: &str, reason: impl Into<String>) -> S3Error {
        S3Error { operation, key: key.to_owned(), reason: reason.into() }
    }
}

/// Every key under `prefix` after `start_after` in `bucket`, page after page (the SDK's
/// paginator follows the continuation tokens).
pub async fn list_keys(
    client: &Client,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<Vec<String>, S3Error> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_start_after(start_after.map(str::to_owned))
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| S3Error::new("LIST", prefix, describe(&e)))?;
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    Ok(keys)
}

/// Readiness: the bucket answers a HEAD request with our credentials.
pub struct S3Check {
    client: Client,
    bucket: String,
}

impl S3Check {
    /// A check of `bucket`.
    pub fn new(client: Client, bucket: &str) -> S3Check {
        S3Check { client, bucket: bucket.to_owned() }
    }
}

impl Check for S3Check {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => Ok(format!("bucket {} is reachable", self.bucket)),
                Err(e) => Err(format!("bucket {}: {}", self.bucket, describe(&e))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let bad = |pairs: &[(&str, &str)]| {
            S3Settings::from_env(&Env::from_pairs(pairs.iter().copied())).err().map(|e| e.to_string())
        };
        assert_eq!(
            bad(&[("S3_BUCKET", "My_Bucket")]).as_deref(),
            Some("S3_BUCKET: \"My_Bucket\" is not a bucket name: use 3 to 63 lowercase letters, digits, '-' or '.'")
        );
        assert_eq!(
            bad(&[("S3_ENDPOINT", "127.0.0.1:9000")]).as_deref(),
            Some("S3_ENDPOINT: \"127.0.0.1:9000\" must start with http:// or https://")
        );
        assert_eq!(
            bad(&[("S3_PREFIX", "s3://store-events/prod")]).as_deref(),
            Some(
                "S3_PREFIX: \"s3://store-events/prod\" is a URL: give the key prefix inside S3_BUCKET (e.g. \
                 store-events/prod)"
            )
        );
    }

    #[test]
    fn keys_go_under_the_prefix() {
        let settings = S3Settings::from_env(&Env::from_pairs([("S3_PREFIX", "/events/")]));
        assert_eq!(settings.map(|s| s.key("a/b")).ok().as_deref(), Some("events/a/b"));
    }
}

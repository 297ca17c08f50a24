//! Amazon MSK IAM authentication: SASL OAUTHBEARER whose token is a SigV4-presigned URL.
//!
//! The token is what AWS's own signers (aws-msk-iam-sasl-signer for Go, Java, Python) make:
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect` presigned for the
//! service `kafka-cluster` with `X-Amz-Expires=900`, a `User-Agent` query parameter added
//! after signing, the whole URL base64url-encoded without padding. It is signed here with
//! `aws-sigv4` (the AWS SDK's own signer, already in the tree through aws-sdk-s3) rather than
//! with a separate signer crate, so that the one place a credential touches is the SDK.
//!
//! Credentials come from the default AWS chain (environment, profile, IRSA web identity,
//! ECS task role, instance profile). rskafka asks for a token on every new connection, so
//! tokens are cached and signed again when less than [`REFRESH_BEFORE`] of their life is
//! left, or when the credentials under them expire sooner.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::{Mutex, OnceCell};

/// How long a token is valid (the signers' and MSK's value).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// A cached token is replaced when less than this is left of its life.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// The service name MSK IAM tokens are signed for.
pub const SIGNING_NAME: &str = "kafka-cluster";

/// One signed token.
#[derive(Debug, Clone)]
pub struct Token {
    /// What goes on the wire.
    pub value: String,
    /// When MSK stops accepting it: the URL's expiry or the credentials', the earlier.
    pub expires_at: SystemTime,
    /// The access key it was signed with (not secret; shown by diagnostics).
    pub access_key_id: String,
}

impl Token {
    fn fresh_at(&self, now: SystemTime) -> bool {
        now + REFRESH_BEFORE < self.expires_at
    }
}

/// Signs and caches MSK IAM tokens for one region.
pub struct MskIamTokens {
    region: String,
    provider: OnceCell<SharedCredentialsProvider>,
    cached: Mutex<Option<Token>>,
}

impl MskIamTokens {
    /// Tokens signed with the default AWS credential chain, loaded on first use.
    pub fn from_default_chain(region: &str) -> MskIamTokens {
        MskIamTokens { region: region.to_owned(), provider: OnceCell::new(), cached: Mutex::new(None) }
    }

    /// Tokens signed with the credentials of `provider`.
    pub fn with_provider(region: &str, provider: SharedCredentialsProvider) -> MskIamTokens {
        MskIamTokens {
            region: region.to_owned(),
            provider: OnceCell::new_with(Some(provider)),
            cached: Mutex::new(None),
        }
    }

    /// The region tokens are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A valid token, signed now or taken from the cache.
    pub async fn token(&self) -> Result<String, TokenError> {
        self.token_at(SystemTime::now()).await.map(|t| t.value)
    }

    /// The token to use at `now` (tests move the clock).
    pub async fn token_at(&self, now: SystemTime) -> Result<Token, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.fresh_at(now)) {
            return Ok(token.clone());
        }
        let provider = self
            .provider
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
                config.credentials_provider().unwrap_or_else(|| SharedCredentialsProvider::new(NoCredentials))
            })
            .await;
        let credentials =
            provider.provide_credentials().await.map_err(|e| TokenError::NoCredentials(crate::error_chain(&e)))?;
        let token = sign_token(&credentials, &self.region, now)?;
        tracing::debug!(access_key_id = token.access_key_id, expires_at = ?token.expires_at, "Signed an MSK IAM token.");
        *cached = Some(token.clone());
        Ok(token)
    }
}

/// Why no token could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The default credential chain found none (the cause chain says what it tried).
    #[error("AWS_MSK_IAM: no AWS credentials: {0}")]
    NoCredentials(String),
    /// The credentials could not sign the token.
    #[error("AWS_MSK_IAM: {0}")]
    Signing(String),
}

/// Signs a token for `region` with `credentials` at `now`.
pub fn sign_token(credentials: &Credentials, region: &str, now: SystemTime) -> Result<Token, TokenError> {
    let host = format!("kafka.{region}.amazonaws.com");
    let unsigned = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Signing(format!("signing parameters: {e}")))?
        .into();
    let request = SignableRequest::new("GET", &unsigned, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| TokenError::Signing(format!("the request to sign: {e}")))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| TokenError::Signing(format!("signing failed: {e}")))?.into_parts();
    let mut url = url::Url::parse(&unsigned).map_err(|e| TokenError::Signing(e.to_string()))?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in instructions.params() {
            query.append_pair(name, value);
        }
        query.append_pair("User-Agent", concat!("store-events/", env!("CARGO_PKG_VERSION")));
    }
    let url_expiry = now + TOKEN_LIFETIME;
    let expires_at = credentials.expiry().map_or(url_expiry, |e| e.min(url_expiry));
    Ok(Token {
        value: URL_SAFE_NO_PAD.encode(url.as_str()),
        expires_at,
        access_key_id: credentials.access_key_id().to_owned(),
    })
}

/// What signs when the SDK found no credential provider at all.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no AWS credential provider is configured (environment, profile, web identity, ECS or instance role)",
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::DateTime;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339).map(SystemTime::from).unwrap()
    }

    /// The token decoded into its URL's host and query parameters.
    fn decode(token: &str) -> (String, HashMap<String, String>, String) {
        let bytes = URL_SAFE_NO_PAD.decode(token).expect("not base64url without padding");
        let text = String::from_utf8(bytes).expect("not UTF-8");
        let url = url::Url::parse(&text).unwrap_or_else(|e| panic!("not a URL: {e}: {text}"));
        let query = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        (url.host_str().unwrap_or_default().to_owned(), query, text)
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// SigV4 for a presigned GET, written from the AWS documentation, independently of
    /// aws-sigv4: the canonical request, the string to sign, the derived key.
    fn expected_signature(query: &HashMap<String, String>, host: &str, secret: &str) -> String {
        let encode = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| *k != "X-Amz-Signature" && *k != "User-Agent")
            .map(|(k, v)| (encode(k), encode(v)))
            .collect();
        pairs.sort();
        let canonical_query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let empty_hash = hex::encode(Sha256::digest(b""));
        let canonical = format!("GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{empty_hash}");
        let date = &query["X-Amz-Date"];
        let scope = query["X-Amz-Credential"].split_once('/').map(|(_, s)| s.to_owned()).unwrap_or_default();
        let to_sign =
            format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
        let parts: Vec<&str> = scope.split('/').collect();
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), parts[0]);
        for part in &parts[1..] {
            key = hmac(&key, part);
        }
        hex::encode(hmac(&key, &to_sign))
    }

    #[test]
    fn the_token_is_a_presigned_kafka_cluster_connect_url() {
        let credentials = Credentials::new(AKID, SECRET, None, None, "test");
        let now = at("2026-11-24T12:34:56Z");
        let token = sign_token(&credentials, "eu-west-1", now).unwrap();
        assert!(!token.value.contains(['=', '+', '/']), "base64url without padding: {}", token.value);
        let (host, query, text) = decode(&token.value);
        assert!(text.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"), "{text}");
        assert_eq!(host, "kafka.eu-west-1.amazonaws.com");
        assert_eq!(query["Action"], "kafka-cluster:Connect");
        assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(query["X-Amz-Credential"], "AKIDEXAMPLE/20261124/eu-west-1/kafka-cluster/aws4_request");
        assert_eq!(query["X-Amz-Date"], "20261124T123456Z");
        assert_eq!(query["X-Amz-Expires"], "900");
        assert_eq!(query["X-Amz-SignedHeaders"], "host");
        assert!(query["User-Agent"].starts_with("store-events/"));
        assert!(!query.contains_key("X-Amz-Security-Token"), "long-term keys carry no session token");
        assert_eq!(query["X-Amz-Signature"], expected_signature(&query, &host, SECRET));
        assert_eq!(token.expires_at, now + TOKEN_LIFETIME);
        assert_eq!(token.access_key_id, AKID);
    }

    #[test]
    fn session_credentials_sign_their_token_and_cap_the_expiry() {
        let now = at("2026-11-24T12:00:00Z");
        let soon = now + Duration::from_secs(120);
        let credentials =
            Credentials::new("ASIATEMP", SECRET, Some("FwoGZX+session/token==".to_owned()), Some(soon), "t");
        let token = sign_token(&credentials, "us-east-1", now).unwrap();
        let (host, query, _) = decode(&token.value);
        assert_eq!(query["X-Amz-Security-Token"], "FwoGZX+session/token==");
        assert_eq!(query["X-Amz-Signature"], expected_signature(&query, &host, SECRET));
        assert_eq!(token.expires_at, soon, "the credentials expire before the URL does");
    }

    /// A credential provider that counts its calls and hands out numbered keys.
    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(format!("AKID{n}"), SECRET, None, None, "counting")))
        }
    }

    #[tokio::test]
    async fn tokens_are_cached_and_signed_again_before_they_expire() {
        let calls = Arc::new(AtomicUsize::new(0));
        let tokens =
            MskIamTokens::with_provider("eu-west-1", SharedCredentialsProvider::new(Counting(Arc::clone(&calls))));
        let start = at("2026-11-24T12:00:00Z");
        let first = tokens.token_at(start).await.unwrap();
        let later = tokens.token_at(start + Duration::from_secs(300)).await.unwrap();
        assert_eq!(later.value, first.value, "a token with 10 minutes left is reused");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let refreshed = tokens.token_at(start + TOKEN_LIFETIME - REFRESH_BEFORE).await.unwrap();
        assert_ne!(refreshed.value, first.value, "a token with 5 minutes left is replaced");
        assert_eq!(refreshed.access_key_id, "AKID1");
        assert!(refreshed.expires_at > first.expires_at);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn missing_credentials_are_a_clear_error() {
        let tokens = MskIamTokens::with_provider("eu-west-1", SharedCredentialsProvider::new(NoCredentials));
        let error = tokens.token_at(at("2026-11-24T12:00:00Z")).await.err().unwrap().to_string();
        assert!(error.starts_with("AWS_MSK_IAM: no AWS credentials"), "{error}");
        assert!(error.contains("no AWS credential provider is configured"), "{error}");
    }
}

//! How a service proves who it is to Kafka and checks who Kafka is: the `KAFKA_SECURITY_*`,
//! `KAFKA_SASL_*` and `KAFKA_SSL_*` variables, with the names librdkafka and the Java
//! client use. Everything that can be checked is checked at start-up (files readable, PEM
//! parsable, combinations that make sense), so a bad setting is one line and exit 2, not a
//! connection that fails later.
//!
//! Amazon MSK listens on TLS (9094), SASL/SCRAM (9096) and IAM (9098); the README's MSK
//! section gives the settings for each.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use rskafka::client::{Credentials, OauthBearerCredentials, SaslConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::msk_iam::MskIamTokens;
use crate::config::{ConfigError, Env};

/// `KAFKA_SECURITY_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// No TLS, no authentication (local stacks).
    Plaintext,
    /// TLS; with a client certificate for mutual TLS.
    Ssl,
    /// SASL without TLS (tests, private networks).
    SaslPlaintext,
    /// SASL inside TLS: what MSK's SCRAM (9096) and IAM (9098) listeners speak.
    SaslSsl,
}

impl Protocol {
    fn parse(raw: &str) -> Option<Protocol> {
        Some(match raw.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Protocol::Plaintext,
            "SSL" => Protocol::Ssl,
            "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
            "SASL_SSL" => Protocol::SaslSsl,
            _ => return None,
        })
    }

    fn uses_tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// `KAFKA_SASL_MECHANISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// User name and password in clear (only inside TLS).
    Plain,
    /// SCRAM with SHA-256.
    ScramSha256,
    /// SCRAM with SHA-512: MSK's SCRAM listener.
    ScramSha512,
    /// A bearer token read from a file on every new connection (an OIDC sidecar keeps it fresh).
    OauthBearer,
    /// MSK IAM: OAUTHBEARER with a SigV4-signed token from the AWS credential chain.
    AwsMskIam,
}

impl Mechanism {
    fn parse(raw: &str) -> Option<Mechanism> {
        Some(match raw.to_ascii_uppercase().as_str() {
            "PLAIN" => Mechanism::Plain,
            "SCRAM-SHA-256" => Mechanism::ScramSha256,
            "SCRAM-SHA-512" => Mechanism::ScramSha512,
            "OAUTHBEARER" => Mechanism::OauthBearer,
            "AWS_MSK_IAM" => Mechanism::AwsMskIam,
            _ => return None,
        })
    }
}

/// A password that never appears in logs or `Debug` output.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the client authenticates, once checked.
#[derive(Clone)]
enum Sasl {
    Password { mechanism: Mechanism, username: String, password: Secret },
    TokenFile(PathBuf),
    MskIam(Arc<MskIamTokens>),
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sasl::Password { mechanism, username, .. } => {
                write!(f, "{mechanism:?} as {username:?}")
            }
            Sasl::TokenFile(path) => write!(f, "OAUTHBEARER with the token in {}", path.display()),
            Sasl::MskIam(tokens) => write!(f, "AWS_MSK_IAM in {}", tokens.region()),
        }
    }
}

/// The checked security settings of a Kafka connection.
#[derive(Clone, Debug)]
pub struct Security {
    /// The protocol.
    pub protocol: Protocol,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Sasl>,
}

impl Security {
    /// No TLS, no SASL.
    pub fn plaintext() -> Security {
        Security { protocol: Protocol::Plaintext, tls: None, sasl: None }
    }

    /// Reads and checks the variables; `bootstrap` tells the MSK region when the host names it.
    pub fn from_env(env: &Env, bootstrap: &[String]) -> Result<Security, ConfigError> {
        const PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
        let raw = env.string(PROTOCOL, "PLAINTEXT");
        let protocol = Protocol::parse(&raw).ok_or_else(|| {
            ConfigError::new(PROTOCOL, format!("{raw:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))
        })?;
        let tls = tls_config(env, protocol)?;
        let sasl = sasl(env, protocol, bootstrap)?;
        Ok(Security { protocol, tls, sasl })
    }

    /// The SASL mechanism in use, if any, for logs and diagnostics.
    pub fn describe(&self) -> String {
        match &self.sasl {
            None => format!("{:?}", self.protocol),
            Some(sasl) => format!("{:?} with {sasl:?}", self.protocol),
        }
    }

    /// The MSK IAM token source, when that is the mechanism.
    pub fn msk_iam(&self) -> Option<&Arc<MskIamTokens>> {
        match &self.sasl {
            Some(Sasl::MskIam(tokens)) => Some(tokens),
            _ => None,
        }
    }

    /// Applies TLS and SASL to an rskafka client builder.
    pub fn apply(&self, mut builder: rskafka::client::ClientBuilder) -> rskafka::client::ClientBuilder {
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        if let Some(sasl) = &self.sasl {
            builder = builder.sasl_config(sasl_config(sasl));
        }
        builder
    }
}

fn sasl_config(sasl: &Sasl) -> SaslConfig {
    match sasl {
        Sasl::Password { mechanism, username, password } => {
            let credentials = Credentials::new(username.clone(), password.0.clone());
            match mechanism {
                Mechanism::Plain => SaslConfig::Plain(credentials),
                Mechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                _ => SaslConfig::ScramSha512(credentials),
            }
        }
        Sasl::TokenFile(path) => {
            let path = path.clone();
            SaslConfig::Oauthbearer(OauthBearerCredentials {
                callback: Arc::new(move || {
                    let path = path.clone();
                    async move {
                        let token = tokio::fs::read_to_string(&path).await.map_err(|e| {
                            format!("the OAUTHBEARER token file {} cannot be read: {e}", path.display())
                        })?;
                        Ok(token.trim().to_owned())
                    }
                    .boxed()
                }),
                authz_id: None,
                bearer_kvs: Vec::new(),
            })
        }
        Sasl::MskIam(tokens) => {
            let tokens = Arc::clone(tokens);
            SaslConfig::Oauthbearer(OauthBearerCredentials {
                callback: Arc::new(move || {
                    let tokens = Arc::clone(&tokens);
                    async move { tokens.token().await.map_err(Into::into) }.boxed()
                }),
                authz_id: None,
                bearer_kvs: Vec::new(),
            })
        }
    }
}

fn tls_config(env: &Env, protocol: Protocol) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
    const CA: &str = "KAFKA_SSL_CA_LOCATION";
    const CERT: &str = "KAFKA_SSL_CERTIFICATE_LOCATION";
    const KEY: &str = "KAFKA_SSL_KEY_LOCATION";
    let ca = env.raw(CA).map(PathBuf::from);
    let cert = env.raw(CERT).map(PathBuf::from);
    let key = env.raw(KEY).map(PathBuf::from);
    if !protocol.uses_tls() {
        for (name, value) in [(CA, &ca), (CERT, &cert), (KEY, &key)] {
            if value.is_some() {
                return Err(ConfigError::new(
                    name,
                    format!("is set, but KAFKA_SECURITY_PROTOCOL is {protocol:?}: use SSL or SASL_SSL for TLS"),
                ));
            }
        }
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &ca {
        Some(path) => {
            let certs = read_certificates(path).map_err(|p| ConfigError::new(CA, p))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ConfigError::new(CA, format!("{} holds no usable CA certificate", path.display())));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(ConfigError::new(
                    CA,
                    "is not set and the system has no CA certificates: set it to a PEM bundle",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("KAFKA_SECURITY_PROTOCOL", format!("TLS cannot be set up: {e}")))?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certificates(&cert).map_err(|p| ConfigError::new(CERT, p))?;
            let key_der = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| ConfigError::new(KEY, format!("{} holds no PEM private key: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| ConfigError::new(KEY, format!("does not match {CERT}: {e}")))?
        }
        (Some(_), None) => return Err(ConfigError::new(KEY, format!("must be set when {CERT} is"))),
        (None, Some(_)) => return Err(ConfigError::new(CERT, format!("must be set when {KEY} is"))),
    };
    Ok(Some(Arc::new(config)))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{} cannot be read: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn sasl(env: &Env, protocol: Protocol, bootstrap: &[String]) -> Result<Option<Sasl>, ConfigError> {
    const MECHANISM: &str = "KAFKA_SASL_MECHANISM";
    const USERNAME: &str = "KAFKA_SASL_USERNAME";
    const PASSWORD: &str = "KAFKA_SASL_PASSWORD";
    const PASSWORD_FILE: &str = "KAFKA_SASL_PASSWORD_FILE";
    const TOKEN_FILE: &str = "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE";
    let mechanism = env.raw(MECHANISM).map(str::to_owned);
    let username = env.raw(USERNAME).map(str::to_owned);
    let password = env.raw(PASSWORD).map(str::to_owned);
    let password_file = env.raw(PASSWORD_FILE).map(PathBuf::from);
    let token_file = env.raw(TOKEN_FILE).map(PathBuf::from);
    if !protocol.uses_sasl() {
        if mechanism.is_some() {
            return Err(ConfigError::new(
                MECHANISM,
                format!("is set, but KAFKA_SECURITY_PROTOCOL is {protocol:?}: use SASL_SSL or SASL_PLAINTEXT"),
            ));
        }
        return Ok(None);
    }
    let raw = mechanism.ok_or_else(|| {
        ConfigError::new(MECHANISM, "must be set when KAFKA_SECURITY_PROTOCOL is SASL_SSL or SASL_PLAINTEXT")
    })?;
    let mechanism = Mechanism::parse(&raw).ok_or_else(|| {
        ConfigError::new(
            MECHANISM,
            format!("{raw:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM"),
        )
    })?;
    let unused = |name: &str, value: bool| {
        if value { Err(ConfigError::new(name, format!("is not used with {MECHANISM}={raw}"))) } else { Ok(()) }
    };
    match mechanism {
        Mechanism::Plain | Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
            unused(TOKEN_FILE, token_file.is_some())?;
            let username = username
                .filter(|u| !u.is_empty())
                .ok_or_else(|| ConfigError::new(USERNAME, format!("must be set for {raw}")))?;
            let password = match (password, password_file) {
                (Some(password), None) => password,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| ConfigError::new(PASSWORD_FILE, format!("{} cannot be read: {e}", path.display())))?,
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(PASSWORD_FILE, format!("set this or {PASSWORD}, not both")));
                }
                (None, None) => {
                    return Err(ConfigError::new(PASSWORD, format!("must be set for {raw} (or {PASSWORD_FILE})")));
                }
            };
            if password.is_empty() {
                return Err(ConfigError::new(PASSWORD, "is empty"));
            }
            Ok(Some(Sasl::Password { mechanism, username, password: Secret(password) }))
        }
        Mechanism::OauthBearer => {
            for (name, value) in [(USERNAME, username.is_some()), (PASSWORD, password.is_some())] {
                unused(name, value)?;
            }
            unused(PASSWORD_FILE, password_file.is_some())?;
            let path = token_file.ok_or_else(|| ConfigError::new(TOKEN_FILE, "must be set for OAUTHBEARER"))?;
            std::fs::metadata(&path)
                .map_err(|e| ConfigError::new(TOKEN_FILE, format!("{} cannot be read: {e}", path.display())))?;
            Ok(Some(Sasl::TokenFile(path)))
        }
        Mechanism::AwsMskIam => {
            for (name, value) in [(USERNAME, username.is_some()), (PASSWORD, password.is_some())] {
                unused(name, value)?;
            }
            unused(PASSWORD_FILE, password_file.is_some())?;
            unused(TOKEN_FILE, token_file.is_some())?;
            let region = bootstrap
                .iter()
                .find_map(|server| msk_region(server))
                .or_else(|| env.raw("AWS_REGION").filter(|r| !r.is_empty()).map(str::to_owned))
                .ok_or_else(|| {
                    ConfigError::new(
                        "AWS_REGION",
                        "must be set for AWS_MSK_IAM when KAFKA_BOOTSTRAP_SERVERS are not MSK host names",
                    )
                })?;
            Ok(Some(Sasl::MskIam(Arc::new(MskIamTokens::from_default_chain(&region)))))
        }
    }
}

/// The region in an MSK broker host name: `b-1.name.abc123.c2.kafka.eu-west-1.amazonaws.com:9098`.
fn msk_region(server: &str) -> Option<String> {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().position(|l| *l == "kafka" || *l == "kafka-serverless")?;
    let region = labels.get(at + 1)?;
    (labels.get(at + 2) == Some(&"amazonaws")).then(|| (*region).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(pairs: &[(&str, &str)]) -> Result<Security, String> {
        let env = Env::from_pairs(pairs.iter().copied());
        Security::from_env(&env, &["127.0.0.1:9092".to_owned()]).map_err(|e| e.to_string())
    }

    #[test]
    fn plaintext_is_the_default_and_needs_nothing() {
        let plain = security(&[]).unwrap();
        assert_eq!(plain.protocol, Protocol::Plaintext);
        assert_eq!(plain.describe(), "Plaintext");
    }

    #[test]
    fn bad_combinations_name_the_variable_and_the_fix() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("KAFKA_SECURITY_PROTOCOL", "TLS")], "KAFKA_SECURITY_PROTOCOL: \"TLS\" is not one of"),
            (&[("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")], "KAFKA_SASL_MECHANISM: must be set"),
            (&[("KAFKA_SASL_MECHANISM", "PLAIN")], "KAFKA_SASL_MECHANISM: is set, but KAFKA_SECURITY_PROTOCOL is"),
            (&[("KAFKA_SSL_CA_LOCATION", "/ca.pem")], "KAFKA_SSL_CA_LOCATION: is set, but"),
            (
                &[("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"), ("KAFKA_SASL_MECHANISM", "GSSAPI")],
                "KAFKA_SASL_MECHANISM: \"GSSAPI\" is not one of",
            ),
            (
                &[("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"), ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")],
                "KAFKA_SASL_USERNAME: must be set for SCRAM-SHA-512",
            ),
            (
                &[
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                    ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                    ("KAFKA_SASL_USERNAME", "u"),
                ],
                "KAFKA_SASL_PASSWORD: must be set for SCRAM-SHA-512",
            ),
            (
                &[
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "u"),
                    ("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/password"),
                ],
                "KAFKA_SASL_PASSWORD_FILE: /nonexistent/password cannot be read",
            ),
            (
                &[("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"), ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM")],
                "AWS_REGION: must be set for AWS_MSK_IAM",
            ),
            (
                &[
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                    ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
                    ("KAFKA_SASL_USERNAME", "u"),
                ],
                "KAFKA_SASL_USERNAME: is not used with KAFKA_SASL_MECHANISM=AWS_MSK_IAM",
            ),
            (
                &[("KAFKA_SECURITY_PROTOCOL", "SSL"), ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")],
                "KAFKA_SSL_CA_LOCATION: /nonexistent/ca.pem cannot be read",
            ),
            (
                &[("KAFKA_SECURITY_PROTOCOL", "SSL"), ("KAFKA_SSL_CERTIFICATE_LOCATION", "/c.pem")],
                "KAFKA_SSL_KEY_LOCATION: must be set when KAFKA_SSL_CERTIFICATE_LOCATION is",
            ),
        ];
        for (pairs, expected) in cases {
            let error = security(pairs).err().unwrap_or_else(|| panic!("{pairs:?} was accepted"));
            assert!(error.starts_with(expected), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let secured = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "alice"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
        ])
        .unwrap();
        let shown = format!("{secured:?} {}", secured.describe());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ScramSha512 as \"alice\""), "{shown}");
    }

    #[test]
    fn the_msk_region_comes_from_the_broker_host_name() {
        assert_eq!(msk_region("b-1.orders.abc123.c2.kafka.eu-west-1.amazonaws.com:9098").as_deref(), Some("eu-west-1"));
        assert_eq!(
            msk_region("boot-abc.c1.kafka-serverless.us-east-2.amazonaws.com:9098").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(msk_region("kafka.internal:9092"), None);
        assert_eq!(msk_region("127.0.0.1:9098"), None);
        let iam = Security::from_env(
            &Env::from_pairs([("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"), ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM")]),
            &["b-2.orders.abc123.c2.kafka.ap-south-1.amazonaws.com:9098".to_owned()],
        )
        .unwrap();
        assert_eq!(iam.msk_iam().map(|t| t.region().to_owned()).as_deref(), Some("ap-south-1"));
    }
}

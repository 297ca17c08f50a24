//! Who may write events: API keys, each bound to the stores it may write for.
//!
//! A key is a random bearer token (`sek_` and 43 base64url characters: 256 bits) that
//! the platform team issues with `producer issue-key` and hands to one store (or one
//! system). The producer never holds keys, only their SHA-256 digests, in a JSON file
//! mounted from a Kubernetes Secret (`PRODUCER_API_KEYS_FILE`), read again when it changes,
//! so keys are added, rotated (two digests for one principal while the old key is phased
//! out) and revoked without a restart. Why keys rather than a client certificate per
//! store: stores sit behind load balancers and proxies that end TLS (an ALB among them),
//! where a client certificate does not reach the service; a bearer header does, and
//! issuing and revoking one is a line in a file.
//!
//! A fast hash is right here: a key has 256 random bits, so there is nothing to guess
//! (the reason passwords need slow hashes); lookups go by digest, so comparing secrets
//! byte by byte, and its timing, never happens.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The prefix of every key, so that a leaked one is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "sek_";
/// How often the keys file is checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Who sent a request, and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The name the file gives it: logged, counted and written with each record.
    pub name: String,
    /// The stores it may write events for.
    pub stores: Stores,
    /// Whether it may call `/v1/simulate` (when that is on).
    pub simulate: bool,
    /// Its own rate limit in events per second (`"rate"`; 0: none), else
    /// `PRODUCER_RATE_LIMIT`'s.
    pub rate: Option<f64>,
}

/// The store ids a principal may write for.
#[derive(Debug, Clone, PartialEq)]
pub enum Stores {
    /// Every store (`"stores": "*"`): head office systems, backfills.
    All,
    /// These stores only.
    Only(BTreeSet<u64>),
}

impl Stores {
    /// Whether `store_id` is one of them.
    pub fn allows(&self, store_id: u64) -> bool {
        match self {
            Stores::All => true,
            Stores::Only(ids) => ids.contains(&store_id),
        }
    }
}

/// The principals by the SHA-256 digest of their key.
#[derive(Debug, Default)]
pub struct Keys(HashMap<[u8; 32], Arc<Principal>>);

impl Keys {
    /// Parses the keys file's JSON; the error names the entry and the field.
    pub fn parse(text: &str) -> Result<Keys, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            keys: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            principal: String,
            sha256: String,
            stores: StoresField,
            #[serde(default)]
            simulate: bool,
            #[serde(default)]
            rate: Option<f64>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum StoresField {
            List(Vec<u64>),
            Star(String),
        }
        let file: File = serde_json::from_str(text).map_err(|e| format!("not a keys file: {e}"))?;
        let mut keys = HashMap::new();
        for (index, entry) in file.keys.into_iter().enumerate() {
            let at = |problem: String| format!("keys[{index}] ({:?}): {problem}", entry.principal);
            if entry.principal.trim().is_empty() || entry.principal.len() > 128 {
                return Err(at("principal must have 1 to 128 characters".to_owned()));
            }
            let digest = parse_digest(&entry.sha256).map_err(at)?;
            let stores = match entry.stores {
                StoresField::Star(star) if star == "*" => Stores::All,
                StoresField::Star(other) => {
                    return Err(at(format!("stores must be a list of store ids or \"*\", not {other:?}")));
                }
                StoresField::List(ids) if ids.is_empty() => {
                    return Err(at("stores is empty: list the store ids, or \"*\" for all".to_owned()));
                }
                StoresField::List(ids) if ids.contains(&0) => {
                    return Err(at("store ids start at 1".to_owned()));
                }
                StoresField::List(ids) => Stores::Only(ids.into_iter().collect()),
            };
            if let Some(rate) = entry.rate
                && !(rate.is_finite() && rate >= 0.0)
            {
                return Err(at(format!("rate must be events per second, 0 or more (0: no limit), not {rate}")));
            }
            let principal =
                Principal { name: entry.principal.clone(), stores, simulate: entry.simulate, rate: entry.rate };
            if keys.insert(digest, Arc::new(principal)).is_some() {
                return Err(at("the same sha256 appears twice".to_owned()));
            }
        }
        Ok(Keys(keys))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The principal whose key this is.
    pub fn principal(&self, key: &str) -> Option<Arc<Principal>> {
        self.0.get(&digest(key)).cloned()
    }
}

fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("sha256 must be 64 hexadecimal digits (from `producer issue-key`)".to_owned());
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(digest)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key and the SHA-256 digest the keys file holds for it.
pub fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let digest = to_hex(&digest(&key));
    (key, digest)
}

/// `producer issue-key PRINCIPAL STORES [--simulate]`: a new key for PRINCIPAL, allowed
/// STORES (`17,18` or `*`): the text to print, the key (to hand over once) and the entry
/// for the keys file (its digest only).
pub fn issue_key(args: &[String]) -> Result<String, String> {
    const USAGE: &str = "usage: producer issue-key PRINCIPAL STORES [--simulate]   (STORES: 17,18 or '*')";
    let (principal, stores, rest) = match args {
        [principal, stores, rest @ ..] => (principal, stores, rest),
        _ => return Err(USAGE.to_owned()),
    };
    let simulate = match rest {
        [] => false,
        [flag] if flag == "--simulate" => true,
        _ => return Err(USAGE.to_owned()),
    };
    let stores_json = if stores == "*" {
        serde_json::Value::from("*")
    } else {
        let ids: Result<Vec<u64>, _> = stores.split(',').map(|id| id.trim().parse::<u64>()).collect();
        match ids {
            Ok(ids) if !ids.is_empty() && !ids.contains(&0) => serde_json::Value::from(ids),
            _ => return Err(format!("STORES {stores:?} is not a list of store ids (17,18) or '*'; {USAGE}")),
        }
    };
    let (key, digest) = new_key();
    let mut entry = serde_json::json!({ "principal": principal, "sha256": digest, "stores": stores_json });
    if simulate {
        entry["simulate"] = serde_json::Value::Bool(true);
    }
    // The entry must be one the file takes.
    Keys::parse(&format!("{{\"keys\": [{entry}]}}"))?;
    Ok(format!(
        "key (give it to {principal}; it is not stored anywhere, and cannot be shown again):\n{key}\n\n\
         entry for the keys file (PRODUCER_API_KEYS_FILE, its \"keys\" list):\n{entry}\n"
    ))
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Where the keys come from (`PRODUCER_API_KEYS_FILE` or `PRODUCER_API_KEYS`).
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// A file, read again when it changes.
    File(PathBuf),
    /// The JSON itself, from the environment (ECS `secrets`): a new task takes a new one.
    Inline(String),
}

/// The keys in force, swapped whole when the file changes.
#[derive(Debug)]
pub struct KeyStore {
    source: KeySource,
    keys: RwLock<Arc<Keys>>,
    seen: RwLock<Option<FileStamp>>,
}

/// What tells a changed file: a Kubernetes Secret update replaces the file (a new inode
/// behind the same path), an edit changes its time or length.
#[derive(Debug, Clone, PartialEq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)?;
    Ok(FileStamp { modified: meta.modified().ok(), len: meta.len(), inode: meta.ino() })
}

/// Reads and parses the keys of `source`; the error says what is wrong and where.
pub fn load(source: &KeySource) -> Result<Keys, String> {
    match source {
        KeySource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
            Keys::parse(&text).map_err(|problem| format!("{}: {problem}", path.display()))
        }
        KeySource::Inline(text) => Keys::parse(text),
    }
}

impl KeyStore {
    /// The store, with the keys `source` holds now.
    pub fn open(source: KeySource) -> Result<KeyStore, String> {
        let seen = match &source {
            KeySource::File(path) => stamp(path).ok(),
            KeySource::Inline(_) => None,
        };
        let keys = load(&source)?;
        Ok(KeyStore { source, keys: RwLock::new(Arc::new(keys)), seen: RwLock::new(seen) })
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Reads the file again if it changed since it was last read: `Ok(Some(count))` when
    /// new keys are in force, `Ok(None)` when nothing changed, `Err` (the old keys stay)
    /// when the new file is unreadable or wrong.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, String> {
        let KeySource::File(path) = &self.source else { return Ok(None) };
        let now = stamp(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
        if self.seen.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() == Some(&now) {
            return Ok(None);
        }
        *self.seen.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
        let keys = load(&self.source)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        Ok(Some(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(entries: &str) -> String {
        format!("{{\"keys\": [{entries}]}}")
    }

    #[test]
    fn a_new_key_is_found_by_its_digest_and_nothing_else_is() {
        let (key, digest) = new_key();
        assert!(key.starts_with("sek_") && key.len() == 4 + 43, "{key}");
        let keys = Keys::parse(&file_with(&format!(
            r#"{{"principal": "store-17", "sha256": "{digest}", "stores": [17, 18]}}"#
        )))
        .unwrap();
        let principal = keys.principal(&key).unwrap();
        assert_eq!(principal.name, "store-17");
        assert!(principal.stores.allows(17) && principal.stores.allows(18) && !principal.stores.allows(19));
        assert!(!principal.simulate);
        assert!(keys.principal(&format!("{key}x")).is_none());
        assert!(keys.principal(&digest).is_none(), "the digest is not a key");
    }

    #[test]
    fn star_means_every_store() {
        let (_, digest) = new_key();
        let keys = Keys::parse(&file_with(&format!(
            r#"{{"principal": "hq", "sha256": "{digest}", "stores": "*", "simulate": true}}"#
        )))
        .unwrap();
        assert_eq!(keys.len(), 1);
        let principal = keys.0.values().next().unwrap();
        assert!(principal.stores.allows(1) && principal.stores.allows(99_999) && principal.simulate);
    }

    #[test]
    fn a_wrong_file_is_refused_naming_the_entry_and_the_field() {
        let (_, digest) = new_key();
        let cases = [
            ("{}".to_owned(), "not a keys file: missing field `keys`"),
            (file_with(r#"{"principal": "a", "sha256": "abc", "stores": [1]}"#), "keys[0] (\"a\"): sha256 must be 64"),
            (
                file_with(&format!(r#"{{"principal": "", "sha256": "{digest}", "stores": [1]}}"#)),
                "keys[0] (\"\"): principal",
            ),
            (file_with(&format!(r#"{{"principal": "a", "sha256": "{digest}", "stores": []}}"#)), "stores is empty"),
            (file_with(&format!(r#"{{"principal": "a", "sha256": "{digest}", "stores": "all"}}"#)), "not \"all\""),
            (
                file_with(&format!(r#"{{"principal": "a", "sha256": "{digest}", "stores": [0]}}"#)),
                "store ids start at 1",
            ),
            (
                file_with(&format!(
                    r#"{{"principal": "a", "sha256": "{digest}", "stores": [1]}}, {{"principal": "b", "sha256": "{digest}", "stores": [2]}}"#
                )),
                "keys[1] (\"b\"): the same sha256 appears twice",
            ),
            (
                file_with(&format!(r#"{{"principal": "a", "sha256": "{digest}", "stores": [1], "store": 2}}"#)),
                "unknown field `store`",
            ),
        ];
        for (text, expected) in cases {
            let problem = Keys::parse(&text).unwrap_err();
            assert!(problem.contains(expected), "{text}: {problem}");
        }
    }

    #[test]
    fn issue_key_prints_a_key_and_an_entry_the_file_takes_for_it() {
        let text = issue_key(&["till-17".to_owned(), "17,18".to_owned()]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let key = lines[1];
        let entry: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
        assert_eq!(entry["stores"], serde_json::json!([17, 18]));
        let keys = Keys::parse(&format!("{{\"keys\": [{entry}]}}")).unwrap();
        assert_eq!(keys.principal(key).unwrap().name, "till-17");
        assert!(!lines[4].contains(key), "the entry holds the digest, never the key");
        let star = issue_key(&["hq".to_owned(), "*".to_owned(), "--simulate".to_owned()]).unwrap();
        assert!(star.contains(r#""stores":"*""#) && star.contains(r#""simulate":true"#), "{star}");
        for bad in [vec!["x".to_owned()], vec!["x".to_owned(), "0".to_owned()], vec!["x".to_owned(), "a,b".to_owned()]]
        {
            assert!(issue_key(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bearer_takes_the_token_of_a_bearer_header_only() {
        assert_eq!(bearer(Some("Bearer sek_abc")), Some("sek_abc"));
        assert_eq!(bearer(Some("bearer   sek_abc ")), Some("sek_abc"));
        assert_eq!(bearer(Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("sek_abc")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_keys() {
        let dir = std::env::temp_dir().join(format!("store-events-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api-keys.json");
        let (first, first_digest) = new_key();
        let (second, second_digest) = new_key();
        let entry =
            |name: &str, digest: &str| format!(r#"{{"principal": "{name}", "sha256": "{digest}", "stores": [1]}}"#);
        std::fs::write(&path, file_with(&entry("one", &first_digest))).unwrap();
        let store = KeyStore::open(KeySource::File(path.clone())).unwrap();
        assert_eq!(store.reload_if_changed(), Ok(None), "unchanged");
        assert!(store.keys().principal(&first).is_some() && store.keys().principal(&second).is_none());

        // As Kubernetes updates a mounted Secret: a new file moved over the old one.
        let next = dir.join("next.json");
        std::fs::write(&next, file_with(&format!("{}, {}", entry("one", &first_digest), entry("two", &second_digest))))
            .unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(store.reload_if_changed(), Ok(Some(2)));
        assert_eq!(store.keys().principal(&second).unwrap().name, "two");

        std::fs::write(&next, "{\"keys\": [").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let problem = store.reload_if_changed().unwrap_err();
        assert!(problem.contains("api-keys.json: not a keys file"), "{problem}");
        assert!(store.keys().principal(&second).is_some(), "a broken file keeps the keys in force");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

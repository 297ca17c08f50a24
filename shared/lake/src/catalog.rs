//! Which catalog holds the tables, and how to reach it.
//!
//! - `sql`: Iceberg's SQL catalog on a SQLite file (`ICEBERG_CATALOG_URI`), what
//!   `make up`, docker compose and the tests use; pyiceberg's `SqlCatalog` and Iceberg's
//!   Java `JdbcCatalog` read the same file.
//! - `glue`: the AWS Glue Data Catalog, what Athena reads: one Glue database per namespace,
//!   one Glue table per Iceberg table (`table_type=ICEBERG`, `metadata_location`); a commit
//!   is an `UpdateTable` with the `VersionId` it was planned on, so Glue refuses it when
//!   another member moved the table (`ConcurrentModificationException`).
//! - `s3tables`: an Amazon S3 Tables table bucket (`ICEBERG_S3TABLES_BUCKET_ARN`): one
//!   namespace, one table per event type, located where S3 Tables puts it; a commit is an
//!   `UpdateTableMetadataLocation` with the version token of the table it was applied to,
//!   refused (`ConflictException`) when another member moved the table. Athena reads the
//!   tables through the Glue Data Catalog's `s3tablescatalog` once the bucket is
//!   integrated with AWS analytics services.
//!
//! [`Pinned`] is the seam that makes a commit conditional on the table state it was
//! planned on (see [`crate::table`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent};
use iceberg_catalog_glue::{
    AWS_ACCESS_KEY_ID, AWS_REGION_NAME, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, GLUE_CATALOG_PROP_CATALOG_ID,
    GLUE_CATALOG_PROP_URI, GLUE_CATALOG_PROP_WAREHOUSE, GlueCatalogBuilder,
};
use iceberg_catalog_s3tables::{
    S3TABLES_CATALOG_PROP_ENDPOINT_URL, S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN, S3TablesCatalogBuilder,
};
use iceberg_catalog_sql::{SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalStorageFactory;
use service_runtime::config::{ConfigError, Env};
use service_runtime::s3::S3Settings;

type Result<T> = iceberg::Result<T>;

/// Where the tables are and how they are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeSettings {
    /// `ICEBERG_CATALOG` and its own settings.
    pub catalog: CatalogSettings,
    /// `ICEBERG_WAREHOUSE`: where new tables are located (`s3://<bucket>/<prefix>/iceberg`
    /// by default).
    pub warehouse: String,
    /// `ICEBERG_NAMESPACE`: the namespace (database) of the tables.
    pub namespace: String,
    /// `ICEBERG_TABLE`: this consumer's table (`sale_events` or `inventory_events`).
    pub table: String,
    /// `ICEBERG_COMMIT_INTERVAL`: the least time between two commits of a consumer: a
    /// written batch is appended at once when the last commit is older, else when it is.
    pub commit_interval: Duration,
    /// `ICEBERG_COMMIT_MAX_FILES`: a commit starts early once this many files wait.
    pub commit_max_files: usize,
    /// `ICEBERG_SNAPSHOT_MAX_AGE`: snapshots older than this are expired (the newest
    /// [`RETAIN_SNAPSHOTS`] are always kept), so that metadata does not grow without bound.
    pub snapshot_max_age: Duration,
    /// S3 properties of the tables' file IO (endpoint, region, path style, keys).
    pub file_io: Vec<(String, String)>,
}

/// Which catalog holds the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSettings {
    /// `ICEBERG_CATALOG=sql`: `ICEBERG_CATALOG_URI`, the SQL catalog's database
    /// (`sqlite:<file>`).
    Sql {
        /// `sqlite:<path>`.
        uri: String,
    },
    /// `ICEBERG_CATALOG=glue`: the Glue Data Catalog of the account the AWS credentials
    /// belong to, or `ICEBERG_GLUE_CATALOG_ID`'s; `ICEBERG_GLUE_ENDPOINT` replaces Glue's
    /// regional endpoint (a VPC endpoint, or a Glue-speaking server in tests).
    Glue {
        /// The account whose catalog holds the tables; the caller's when `None`.
        catalog_id: Option<String>,
        /// Glue's endpoint; the region's when `None`.
        endpoint: Option<String>,
    },
    /// `ICEBERG_CATALOG=s3tables`: the S3 Tables table bucket `ICEBERG_S3TABLES_BUCKET_ARN`,
    /// called in the bucket's region; `ICEBERG_S3TABLES_ENDPOINT` replaces the region's
    /// S3 Tables endpoint (an S3 Tables-speaking server in tests).
    S3Tables {
        /// `arn:aws:s3tables:<region>:<account>:bucket/<name>`.
        table_bucket_arn: String,
        /// The bucket's region, from its ARN.
        region: String,
        /// The S3 Tables endpoint; the region's when `None`.
        endpoint: Option<String>,
    },
}

impl CatalogSettings {
    fn from_env(env: &Env) -> std::result::Result<CatalogSettings, ConfigError> {
        match env.string("ICEBERG_CATALOG", "sql").as_str() {
            "sql" => {
                let uri = env.string("ICEBERG_CATALOG_URI", "sqlite:iceberg-catalog.db");
                if !uri.starts_with("sqlite:") {
                    return Err(ConfigError::new(
                        "ICEBERG_CATALOG_URI",
                        format!("{uri:?} is not a SQLite URL: use sqlite:<path of the catalog file>"),
                    ));
                }
                Ok(CatalogSettings::Sql { uri })
            }
            "glue" => {
                let catalog_id = env.raw("ICEBERG_GLUE_CATALOG_ID").map(str::trim).filter(|v| !v.is_empty());
                if let Some(id) = catalog_id
                    && (id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()))
                {
                    return Err(ConfigError::new(
                        "ICEBERG_GLUE_CATALOG_ID",
                        format!("{id:?} is not an AWS account id (12 digits)"),
                    ));
                }
                Ok(CatalogSettings::Glue {
                    catalog_id: catalog_id.map(str::to_owned),
                    endpoint: endpoint(env, "ICEBERG_GLUE_ENDPOINT")?,
                })
            }
            "s3tables" => {
                let arn = env.string("ICEBERG_S3TABLES_BUCKET_ARN", "").trim().to_owned();
                let Some(region) = table_bucket_region(&arn) else {
                    let problem = match arn.as_str() {
                        "" => "is required with ICEBERG_CATALOG=s3tables".to_owned(),
                        arn => format!("{arn:?} is not a table bucket ARN"),
                    };
                    return Err(ConfigError::new(
                        "ICEBERG_S3TABLES_BUCKET_ARN",
                        format!("{problem}: use arn:aws:s3tables:<region>:<account>:bucket/<name>"),
                    ));
                };
                Ok(CatalogSettings::S3Tables {
                    region: region.to_owned(),
                    table_bucket_arn: arn,
                    endpoint: endpoint(env, "ICEBERG_S3TABLES_ENDPOINT")?,
                })
            }
            other => Err(ConfigError::new(
                "ICEBERG_CATALOG",
                format!("{other:?} is not a catalog this version supports: use sql, glue or s3tables"),
            )),
        }
    }
}

/// An optional endpoint URL setting.
fn endpoint(env: &Env, name: &str) -> std::result::Result<Option<String>, ConfigError> {
    let url = env.raw(name).map(str::trim).filter(|v| !v.is_empty());
    match url {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            Err(ConfigError::new(name, format!("{url:?} is not an http(s):// URL")))
        }
        url => Ok(url.map(str::to_owned)),
    }
}

/// The region of a table bucket's ARN (`arn:<partition>:s3tables:<region>:<account>:bucket/<name>`),
/// or `None` when `arn` is not one.
fn table_bucket_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts.as_slice() else {
        return None;
    };
    let name = resource.strip_prefix("bucket/")?;
    let valid = *scheme == "arn"
        && partition.starts_with("aws")
        && *service == "s3tables"
        && !region.is_empty()
        && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then_some(*region)
}

/// Snapshots kept whatever their age.
pub const RETAIN_SNAPSHOTS: usize = 10;

impl LakeSettings {
    /// Reads the settings; `table` is the consumer's default table name.
    pub fn from_env(env: &Env, s3: &S3Settings, table: &str) -> std::result::Result<LakeSettings, ConfigError> {
        let catalog = CatalogSettings::from_env(env)?;
        if let (CatalogSettings::S3Tables { region, .. }, Some(s3_region)) = (&catalog, &s3.region)
            && region != s3_region
        {
            return Err(ConfigError::new(
                "ICEBERG_S3TABLES_BUCKET_ARN",
                format!(
                    "the table bucket is in {region}, the S3 client (AWS_REGION) in {s3_region}: the consumer writes \
                     the tables' files with its S3 client, so the table bucket must be in S3_BUCKET's region"
                ),
            ));
        }
        let default_warehouse = match s3.prefix.as_str() {
            "" => format!("s3://{}/iceberg", s3.bucket),
            prefix => format!("s3://{}/{prefix}/iceberg", s3.bucket),
        };
        let warehouse = env.string("ICEBERG_WAREHOUSE", &default_warehouse).trim_end_matches('/').to_owned();
        if !warehouse.starts_with("s3://") || warehouse.len() <= "s3://".len() {
            return Err(ConfigError::new("ICEBERG_WAREHOUSE", format!("{warehouse:?} is not an s3:// location")));
        }
        let namespace = identifier(env, "ICEBERG_NAMESPACE", "store_events")?;
        let table = identifier(env, "ICEBERG_TABLE", table)?;
        let commit_interval = env.duration("ICEBERG_COMMIT_INTERVAL", Duration::from_secs(5))?;
        if commit_interval.is_zero() {
            return Err(ConfigError::new("ICEBERG_COMMIT_INTERVAL", "must be greater than zero"));
        }
        let mut file_io = vec![("s3.path-style-access".to_owned(), s3.force_path_style.to_string())];
        if let Some(endpoint) = &s3.endpoint {
            file_io.push(("s3.endpoint".to_owned(), endpoint.clone()));
        }
        if let Some(region) = &s3.region {
            file_io.push(("s3.region".to_owned(), region.clone()));
        }
        // Without keys, OpenDAL's own AWS chain finds them (web identity, ECS, IMDS).
        for (variable, property) in [
            ("AWS_ACCESS_KEY_ID", "s3.access-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
            ("AWS_SESSION_TOKEN", "s3.session-token"),
        ] {
            if let Some(value) = env.raw(variable).filter(|v| !v.is_empty()) {
                file_io.push((property.to_owned(), value.to_owned()));
            }
        }
        Ok(LakeSettings {
            catalog,
            warehouse,
            namespace,
            table,
            commit_interval,
            commit_max_files: env.bounded("ICEBERG_COMMIT_MAX_FILES", 500, 1, 100_000)?,
            snapshot_max_age: env.duration("ICEBERG_SNAPSHOT_MAX_AGE", Duration::from_secs(3600))?,
            file_io,
        })
    }
}

/// A namespace or table name Athena and Glue accept: lowercase letters, digits and `_`.
fn identifier(env: &Env, name: &str, default: &str) -> std::result::Result<String, ConfigError> {
    let value = env.string(name, default).trim().to_owned();
    if value.is_empty()
        || value.len() > 255
        || !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(ConfigError::new(
            name,
            format!("{value:?} is not a table identifier: use lowercase letters, digits and '_'"),
        ));
    }
    Ok(value)
}

/// Opens the catalog the settings name.
pub async fn connect(settings: &LakeSettings) -> Result<Arc<dyn Catalog>> {
    let mut props: HashMap<String, String> = settings.file_io.iter().cloned().collect();
    let storage = Arc::new(OpenDalStorageFactory::S3 { customized_credential_load: None });
    match &settings.catalog {
        CatalogSettings::Sql { uri } => {
            // The SQL catalog opens an `Any` pool: its drivers must be registered once.
            sqlx::any::install_default_drivers();
            let mut uri = uri.clone();
            if !uri.contains("mode=") {
                uri.push_str(if uri.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
            }
            props.insert(SQL_CATALOG_PROP_URI.to_owned(), uri);
            props.insert(SQL_CATALOG_PROP_WAREHOUSE.to_owned(), settings.warehouse.clone());
            let catalog = SqlCatalogBuilder::default()
                .sql_bind_style(SqlBindStyle::QMark)
                .with_storage_factory(storage)
                .load("store_events", props)
                .await?;
            Ok(Arc::new(catalog))
        }
        CatalogSettings::Glue { catalog_id, endpoint } => {
            props.insert(GLUE_CATALOG_PROP_WAREHOUSE.to_owned(), settings.warehouse.clone());
            if let Some(id) = catalog_id {
                props.insert(GLUE_CATALOG_PROP_CATALOG_ID.to_owned(), id.clone());
            }
            if let Some(url) = endpoint {
                props.insert(GLUE_CATALOG_PROP_URI.to_owned(), url.clone());
            }
            aws_client(settings, &mut props);
            let catalog = GlueCatalogBuilder::default().with_storage_factory(storage).load("glue", props).await?;
            Ok(Arc::new(catalog))
        }
        CatalogSettings::S3Tables { table_bucket_arn, region, endpoint } => {
            props.insert(S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN.to_owned(), table_bucket_arn.clone());
            if let Some(url) = endpoint {
                props.insert(S3TABLES_CATALOG_PROP_ENDPOINT_URL.to_owned(), url.clone());
            }
            // The bucket's API and its tables' files are in the bucket's region, whatever
            // AWS_REGION says of the ledger's bucket.
            props.insert("s3.region".to_owned(), region.clone());
            aws_client(settings, &mut props);
            props.insert(AWS_REGION_NAME.to_owned(), region.clone());
            let catalog =
                S3TablesCatalogBuilder::default().with_storage_factory(storage).load("s3tables", props).await?;
            Ok(Arc::new(catalog))
        }
    }
}

/// Gives an AWS catalog's client (Glue, S3 Tables: iceberg-rust's AWS catalogs read the
/// same property names) the region and keys the tables' file IO was given (from
/// AWS_REGION, AWS_ACCESS_KEY_ID, ...); without them, the SDK's default chain finds them
/// (IRSA, the ECS task role, instance profile).
fn aws_client(settings: &LakeSettings, props: &mut HashMap<String, String>) {
    for (file_io, client) in [
        ("s3.region", AWS_REGION_NAME),
        ("s3.access-key-id", AWS_ACCESS_KEY_ID),
        ("s3.secret-access-key", AWS_SECRET_ACCESS_KEY),
        ("s3.session-token", AWS_SESSION_TOKEN),
    ] {
        if let Some(value) = settings.file_io.iter().find(|(k, _)| k == file_io).map(|(_, v)| v.clone()) {
            props.insert(client.to_owned(), value);
        }
    }
}

/// A catalog whose `load_table` answers with one table as it was loaded.
///
/// `iceberg`'s `Transaction::commit` loads the table again before it commits and, when the
/// table moved, re-applies its actions on the new state: an append planned on one snapshot
/// would land on another, whatever the new one already holds. Committing through this
/// wrapper keeps the state the append was planned on: the catalog's own checks (the
/// `main` branch still at the planned snapshot; the metadata location unchanged) then
/// refuse the commit when another member moved the table, and the caller plans again.
pub struct Pinned<'a> {
    inner: &'a dyn Catalog,
    table: Table,
}

impl<'a> Pinned<'a> {
    /// `inner`, with `table` as the state every load returns.
    pub fn new(inner: &'a dyn Catalog, table: Table) -> Pinned<'a> {
        Pinned { inner, table }
    }
}

impl std::fmt::Debug for Pinned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").field("table", self.table.identifier()).finish()
    }
}

#[async_trait::async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(&self, namespace: &NamespaceIdent, properties: HashMap<String, String>) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(&self, namespace: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        if table == self.table.identifier() { Ok(self.table.clone()) } else { self.inner.load_table(table).await }
    }
    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(pairs: &[(&str, &str)]) -> std::result::Result<CatalogSettings, ConfigError> {
        CatalogSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn the_sql_catalog_on_a_local_file_is_the_default() {
        assert_eq!(catalog(&[]).unwrap(), CatalogSettings::Sql { uri: "sqlite:iceberg-catalog.db".to_owned() });
        let error = catalog(&[("ICEBERG_CATALOG_URI", "postgres://db/iceberg")]).unwrap_err();
        assert!(error.to_string().contains("ICEBERG_CATALOG_URI"), "{error}");
    }

    #[test]
    fn glue_takes_an_optional_account_and_endpoint() {
        assert_eq!(
            catalog(&[("ICEBERG_CATALOG", "glue")]).unwrap(),
            CatalogSettings::Glue { catalog_id: None, endpoint: None }
        );
        let glue = catalog(&[
            ("ICEBERG_CATALOG", "glue"),
            ("ICEBERG_GLUE_CATALOG_ID", "123456789012"),
            ("ICEBERG_GLUE_ENDPOINT", "http://127.0.0.1:5000"),
        ])
        .unwrap();
        assert_eq!(
            glue,
            CatalogSettings::Glue {
                catalog_id: Some("123456789012".to_owned()),
                endpoint: Some("http://127.0.0.1:5000".to_owned())
            }
        );
    }

    #[test]
    fn s3_tables_takes_a_table_bucket_arn_and_calls_its_region() {
        let arn = "arn:aws:s3tables:eu-west-1:123456789012:bucket/store-events";
        assert_eq!(
            catalog(&[("ICEBERG_CATALOG", "s3tables"), ("ICEBERG_S3TABLES_BUCKET_ARN", arn)]).unwrap(),
            CatalogSettings::S3Tables {
                table_bucket_arn: arn.to_owned(),
                region: "eu-west-1".to_owned(),
                endpoint: None
            }
        );
        let china = "arn:aws-cn:s3tables:cn-north-1:123456789012:bucket/lake-1";
        let local = catalog(&[
            ("ICEBERG_CATALOG", "s3tables"),
            ("ICEBERG_S3TABLES_BUCKET_ARN", china),
            ("ICEBERG_S3TABLES_ENDPOINT", "http://127.0.0.1:5000"),
        ])
        .unwrap();
        assert_eq!(
            local,
            CatalogSettings::S3Tables {
                table_bucket_arn: china.to_owned(),
                region: "cn-north-1".to_owned(),
                endpoint: Some("http://127.0.0.1:5000".to_owned())
            }
        );
    }

    #[test]
    fn s3_tables_refuses_what_is_not_a_table_bucket_arn() {
        for arn in [
            "",
            "store-events",
            "arn:aws:s3:::store-events",
            "arn:aws:s3tables:eu-west-1:123456789012:store-events",
            "arn:aws:s3tables::123456789012:bucket/store-events",
            "arn:aws:s3tables:eu-west-1:12345:bucket/store-events",
            "arn:aws:s3tables:eu-west-1:123456789012:bucket/Store_Events",
            "arn:aws:s3tables:eu-west-1:123456789012:bucket/store-events/table/x",
        ] {
            let error = catalog(&[("ICEBERG_CATALOG", "s3tables"), ("ICEBERG_S3TABLES_BUCKET_ARN", arn)])
                .unwrap_err()
                .to_string();
            assert!(error.contains("ICEBERG_S3TABLES_BUCKET_ARN") && error.contains(arn), "{arn}: {error}");
            assert!(error.contains("arn:aws:s3tables:<region>:<account>:bucket/<name>"), "{error}");
        }
        let error = catalog(&[
            ("ICEBERG_CATALOG", "s3tables"),
            ("ICEBERG_S3TABLES_BUCKET_ARN", "arn:aws:s3tables:eu-west-1:123456789012:bucket/store-events"),
            ("ICEBERG_S3TABLES_ENDPOINT", "s3tables.local"),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("ICEBERG_S3TABLES_ENDPOINT") && error.contains("s3tables.local"), "{error}");
    }

    #[test]
    fn the_table_bucket_must_be_in_the_s3_clients_region() {
        let settings = |region: &str| {
            let env = Env::from_pairs([
                ("S3_BUCKET", "store-events"),
                ("AWS_REGION", region),
                ("ICEBERG_CATALOG", "s3tables"),
                ("ICEBERG_S3TABLES_BUCKET_ARN", "arn:aws:s3tables:eu-west-1:123456789012:bucket/store-events"),
            ]);
            LakeSettings::from_env(&env, &S3Settings::from_env(&env).unwrap(), "sale_events")
        };
        let lake = settings("eu-west-1").unwrap();
        assert!(lake.file_io.contains(&("s3.region".to_owned(), "eu-west-1".to_owned())), "{:?}", lake.file_io);
        let error = settings("us-east-1").unwrap_err().to_string();
        assert!(error.contains("ICEBERG_S3TABLES_BUCKET_ARN") && error.contains("eu-west-1"), "{error}");
        assert!(error.contains("us-east-1"), "{error}");
    }

    #[test]
    fn a_wrong_catalog_setting_names_the_variable_and_the_value() {
        for (pairs, variable, value) in [
            (&[("ICEBERG_CATALOG", "hive")][..], "ICEBERG_CATALOG", "hive"),
            (
                &[("ICEBERG_CATALOG", "glue"), ("ICEBERG_GLUE_CATALOG_ID", "12345")][..],
                "ICEBERG_GLUE_CATALOG_ID",
                "12345",
            ),
            (
                &[("ICEBERG_CATALOG", "glue"), ("ICEBERG_GLUE_ENDPOINT", "glue.local")][..],
                "ICEBERG_GLUE_ENDPOINT",
                "glue.local",
            ),
        ] {
            let error = catalog(pairs).unwrap_err().to_string();
            assert!(error.contains(variable) && error.contains(value), "{error}");
        }
    }
}

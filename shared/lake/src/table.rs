//! One consumer's table: created when missing (schema from the event contract, partitioned
//! by `day(ts)`), its data files written, batches appended exactly once, its snapshots
//! expired, and its files listed for the audit.
//!
//! An append is one attempt: load the table, read the offsets it holds
//! ([`crate::offsets`]), plan, commit through [`Pinned`] so that the commit only lands on
//! the state it was planned on. [`AppendError::Conflict`] means another writer moved the
//! table in between: plan again (the batches it committed are then found present).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Literal, ManifestStatus, Struct, Transform, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};

use crate::catalog::{LakeSettings, Pinned, RETAIN_SNAPSHOTS};
use crate::offsets::{self, Batch, ENTRIES_PROPERTY, Offsets, Plan, TableState};

/// Why the table could not be reached or changed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// Another writer committed between this append's load and its commit.
    #[error("the table moved while the append was planned: {0}")]
    Conflict(iceberg::Error),
    /// The catalog or the file IO failed.
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
    /// The catalog holds something of the table's name that is not an Iceberg table (a
    /// Glue table of Athena's JSON DDL): waiting will not change it.
    #[error(
        "{table} exists in the catalog but is not an Iceberg table ({source}): give the Iceberg tables a name \
         of their own (ICEBERG_NAMESPACE, ICEBERG_TABLE)"
    )]
    NotIceberg {
        /// `namespace.table`.
        table: String,
        /// Why the catalog could not load it.
        source: iceberg::Error,
    },
}

/// The partition field of the tables: the UTC day of `ts`.
pub const DAY_FIELD: &str = "ts_day";

/// A consumer's table in its catalog.
#[derive(Clone)]
pub struct Lake {
    catalog: Arc<dyn Catalog>,
    ident: TableIdent,
    topic: String,
    writer: String,
    location: String,
    file_io: iceberg::io::FileIO,
    snapshot_max_age: std::time::Duration,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The plan it committed (or found nothing to commit for).
    pub plan: Plan,
    /// The new snapshot, when one was committed.
    pub snapshot_id: Option<i64>,
}

impl Lake {
    /// Opens `settings`' table of the events of `topic` in `catalog`, creating the
    /// namespace and the table when they do not exist; `writer` signs its snapshots.
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        settings: &LakeSettings,
        topic: &str,
        writer: &str,
    ) -> Result<Lake, LakeError> {
        let namespace = NamespaceIdent::new(settings.namespace.clone());
        if !catalog.namespace_exists(&namespace).await?
            && let Err(error) = catalog.create_namespace(&namespace, HashMap::new()).await
            // Another consumer created it meanwhile? Catalogs say so differently: the SQL
            // catalog checks first and then meets its own UNIQUE constraint when the other
            // insert landed in between, so look again rather than trust the error's kind.
            && !catalog.namespace_exists(&namespace).await?
        {
            return Err(error.into());
        }
        let ident = TableIdent::new(namespace.clone(), settings.table.clone());
        // Asked with `table_exists`: the Glue catalog's `load_table` reports a missing table
        // as an AWS SDK error (`ErrorKind::Unexpected`), not `TableNotFound`.
        let table = if catalog.table_exists(&ident).await? {
            match load_created(catalog.as_ref(), &ident).await {
                Ok(table) => table,
                // Glue: a table with no `metadata_location` parameter.
                Err(source) if source.kind() == ErrorKind::DataInvalid => {
                    return Err(LakeError::NotIceberg { table: ident.to_string(), source });
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            match catalog.create_table(&namespace, creation(&settings.table)?).await {
                Ok(table) => {
                    tracing::info!(table = %ident, location = table.metadata().location(), "Iceberg table created.");
                    table
                }
                // Lost the race to another creator (the same two ways as above): the table it
                // created is the one to use; its own metadata file is left unreferenced.
                Err(error) => match load_created(catalog.as_ref(), &ident).await {
                    Ok(table) => table,
                    Err(_) => return Err(error.into()),
                },
            }
        };
        Ok(Lake {
            location: table.metadata().location().trim_end_matches('/').to_owned(),
            file_io: table.file_io().clone(),
            catalog,
            ident,
            topic: topic.to_owned(),
            writer: writer.to_owned(),
            snapshot_max_age: settings.snapshot_max_age,
        })
    }

    /// `namespace.table`.
    pub fn name(&self) -> String {
        self.ident.to_string()
    }

    /// The table's location (`s3://...`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where the rows of `day` of the batch at `first_offset` of `partition` are written:
    /// under the table's `data/`, named like the other objects of a batch.
    pub fn file_path(&self, day: NaiveDate, partition: i32, first_offset: i64) -> String {
        format!("{}/data/{DAY_FIELD}={day}/{}+{partition}+{first_offset:020}.parquet", self.location, self.topic)
    }

    /// Writes a data file (the same bytes again when recovery rebuilds it).
    pub async fn write_file(&self, path: &str, body: bytes::Bytes) -> Result<(), LakeError> {
        self.file_io.new_output(path)?.write(body).await?;
        Ok(())
    }

    /// The size of a data file, `None` when it is missing.
    pub async fn file_size(&self, path: &str) -> Result<Option<u64>, LakeError> {
        let input = self.file_io.new_input(path)?;
        if !input.exists().await? {
            return Ok(None);
        }
        Ok(Some(input.metadata().await?.size))
    }

    /// Loads the table as it is now.
    pub async fn load(&self) -> Result<Table, LakeError> {
        Ok(self.catalog.load_table(&self.ident).await?)
    }

    /// What the table holds of this topic.
    pub async fn state(&self) -> Result<TableState, LakeError> {
        Ok(state_of(&self.load().await?, &self.topic))
    }

    /// One attempt to append `batches` (see the module's docs); `starts` says where
    /// partitions the table does not hold yet enter it. Batches that stored nothing only
    /// move the offsets: alone, they make a snapshot (without files) only when `empty` says
    /// so, so that idle partitions do not add a snapshot every interval.
    pub async fn append(&self, batches: &[Batch], starts: &Offsets, empty: bool) -> Result<Appended, LakeError> {
        let table = self.load().await?;
        let plan = offsets::plan(&state_of(&table, &self.topic), starts, batches);
        self.commit(table, batches, plan, empty).await
    }

    /// One attempt to append history (the migration's batches: ledger entries before each
    /// partition's start), each partition's from `firsts` or where the migration stopped.
    pub async fn append_history(&self, batches: &[Batch], firsts: &Offsets) -> Result<Appended, LakeError> {
        let table = self.load().await?;
        let plan = offsets::plan_history(&state_of(&table, &self.topic), firsts, batches);
        self.commit(table, batches, plan, true).await
    }

    /// Commits the batches `plan` appends, with the state it ends in, on `table` as loaded.
    async fn commit(&self, table: Table, batches: &[Batch], plan: Plan, empty: bool) -> Result<Appended, LakeError> {
        let chosen: Vec<&Batch> = plan.append.iter().map(|&i| &batches[i]).collect();
        let files: Vec<_> = chosen.iter().flat_map(|b| &b.files).collect();
        if chosen.is_empty() || (files.is_empty() && !empty) {
            return Ok(Appended { plan: Plan { append: Vec::new(), ..plan }, snapshot_id: None });
        }
        let spec_id = table.metadata().default_partition_spec_id();
        let mut data_files = Vec::with_capacity(files.len());
        for file in &files {
            let days = file.day.signed_duration_since(NaiveDate::default()).num_days();
            data_files.push(
                DataFileBuilder::default()
                    .content(DataContentType::Data)
                    .file_path(file.path.clone())
                    .file_format(DataFileFormat::Parquet)
                    .file_size_in_bytes(file.bytes)
                    .record_count(file.rows)
                    .partition_spec_id(spec_id)
                    .partition(Struct::from_iter([Some(Literal::int(i32::try_from(days).unwrap_or(i32::MAX)))]))
                    .build()
                    .map_err(|e| iceberg::Error::new(ErrorKind::DataInvalid, e.to_string()))?,
            );
        }
        let properties = HashMap::from([
            (offsets::offsets_property(&self.topic), offsets::encode(&plan.state.offsets)),
            (offsets::starts_property(&self.topic), offsets::encode(&plan.state.starts)),
            (offsets::migrated_property(&self.topic), offsets::encode(&plan.state.migrated)),
            (ENTRIES_PROPERTY.to_owned(), offsets::entries_text(&chosen)),
            ("store-events.writer".to_owned(), self.writer.clone()),
        ]);
        let tx = Transaction::new(&table);
        let action = tx.fast_append().add_data_files(data_files).set_snapshot_properties(properties);
        let tx = action.apply(tx)?;
        let committed = tx.commit(&Pinned::new(self.catalog.as_ref(), table)).await.map_err(|error| {
            if error.kind() == ErrorKind::CatalogCommitConflicts { LakeError::Conflict(error) } else { error.into() }
        })?;
        let snapshot_id = committed.metadata().current_snapshot_id();
        Ok(Appended { plan, snapshot_id })
    }

    /// Expires the snapshots older than `ICEBERG_SNAPSHOT_MAX_AGE`, keeping the newest
    /// [`RETAIN_SNAPSHOTS`]; the number expired. Data files stay (every file is in the
    /// current snapshot: appends only); old manifests and metadata files are left for an
    /// orphan-file cleanup (Glue's optimizer, S3 Tables' maintenance, Spark's procedure).
    pub async fn expire_snapshots(&self) -> Result<usize, LakeError> {
        let table = self.load().await?;
        let before = table.metadata().snapshots().count();
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(self.snapshot_max_age.as_millis()).unwrap_or(i64::MAX);
        let old = table.metadata().snapshots().filter(|s| s.timestamp_ms() < cutoff).count();
        if before <= RETAIN_SNAPSHOTS || old == 0 {
            return Ok(0);
        }
        let tx = Transaction::new(&table);
        let action = tx.expire_snapshots().expire_older_than_ms(cutoff).retain_last(RETAIN_SNAPSHOTS);
        let tx = action.apply(tx)?;
        let committed = tx.commit(&Pinned::new(self.catalog.as_ref(), table)).await.map_err(|error| {
            if error.kind() == ErrorKind::CatalogCommitConflicts { LakeError::Conflict(error) } else { error.into() }
        })?;
        Ok(before.saturating_sub(committed.metadata().snapshots().count()))
    }

    /// Every live data file of the current snapshot, from its manifests: path and rows,
    /// once per time the table holds it.
    pub async fn data_files(&self) -> Result<Vec<(String, u64)>, LakeError> {
        Ok(self.contents().await?.1)
    }

    /// What the table holds of this topic and its live data files, both from one snapshot
    /// (two loads could see two: the audit of a running table needs them to agree).
    pub async fn contents(&self) -> Result<(TableState, Vec<(String, u64)>), LakeError> {
        let table = self.load().await?;
        let state = state_of(&table, &self.topic);
        let Some(snapshot) = table.metadata().current_snapshot().cloned() else { return Ok((state, Vec::new())) };
        let list = table.manifest_list_reader(&snapshot).load().await?;
        let mut files = Vec::new();
        for manifest in list.entries() {
            let manifest = manifest.load_manifest(table.file_io()).await?;
            for entry in manifest.entries() {
                if entry.status() != ManifestStatus::Deleted && entry.content_type() == DataContentType::Data {
                    files.push((entry.file_path().to_owned(), entry.record_count()));
                }
            }
        }
        Ok((state, files))
    }
}

/// The offsets, starts and migration progress of `topic`, each from the newest snapshot of
/// `table`'s `main` history that carries it: snapshots written by others (compaction, a
/// maintenance job, a version of this project that did not know a property) are passed
/// over, as Iceberg's Kafka Connect sink does with its own property.
pub fn state_of(table: &Table, topic: &str) -> TableState {
    let metadata = table.metadata();
    let keys = [offsets::offsets_property(topic), offsets::starts_property(topic), offsets::migrated_property(topic)];
    let mut found: [Option<Offsets>; 3] = [None, None, None];
    let mut next = metadata.current_snapshot().cloned();
    while let Some(snapshot) = next {
        let summary = &snapshot.summary().additional_properties;
        for (slot, key) in found.iter_mut().zip(&keys) {
            if slot.is_none() {
                *slot = summary.get(key).and_then(|text| offsets::decode(text));
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
        next = snapshot.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id)).cloned();
    }
    let [offsets, starts, migrated] = found;
    TableState {
        offsets: offsets.unwrap_or_default(),
        starts: starts.unwrap_or_default(),
        migrated: migrated.unwrap_or_default(),
    }
}

/// Loads a table another replica may be creating: S3 Tables creates a table in two calls
/// (CreateTable, then UpdateTableMetadataLocation), and between them the table exists with
/// no metadata to load. Tries for about ten seconds; a table left so for longer (its
/// creator died between the two) is the operator's to delete (README, Iceberg tables).
async fn load_created(catalog: &dyn Catalog, ident: &TableIdent) -> iceberg::Result<Table> {
    let mut wait = Duration::from_millis(100);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match catalog.load_table(ident).await {
            Ok(table) => return Ok(table),
            Err(error) if error.kind() == ErrorKind::DataInvalid || tokio::time::Instant::now() >= deadline => {
                return Err(error);
            }
            Err(error) => tracing::debug!(%error, table = %ident, "The table cannot be loaded yet; trying again."),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// The table's definition: the event contract's columns (field ids 1..16 as in every
/// Parquet file this project writes), partitioned by `day(ts)`, commits not retried by
/// the library (the caller plans again; see [`Pinned`]).
fn creation(name: &str) -> iceberg::Result<TableCreation> {
    let schema = iceberg::arrow::arrow_schema_to_schema(&store_event::columnar::schema())?;
    let ts = schema
        .field_by_name("ts")
        .map(|field| field.id)
        .ok_or_else(|| iceberg::Error::new(ErrorKind::DataInvalid, "the event schema has no ts"))?;
    let spec = UnboundPartitionSpec::builder().add_partition_field(ts, DAY_FIELD, Transform::Day)?.build();
    let properties = HashMap::from([
        ("commit.retry.num-retries".to_owned(), "0".to_owned()),
        ("write.format.default".to_owned(), "parquet".to_owned()),
        ("write.parquet.compression-codec".to_owned(), "zstd".to_owned()),
        ("created-by".to_owned(), "store-events".to_owned()),
    ]);
    Ok(TableCreation::builder()
        .name(name.to_owned())
        .schema(schema)
        .partition_spec(spec)
        .properties(properties)
        .build())
}

//! Bodies compressed at rest: zstd with a dictionary trained per type from the first objects
//! stored of it ([`Codec`] holds the dictionaries and turns bodies into stored bytes and back;
//! [`Trainer`] is the writer's, and decides when a type gets a dictionary).
//!
//! - **The format.** A compressed body is one zstd frame whose header names its dictionary
//!   (zstd's own `Dictionary_ID` field, set to the dictionary's row id in the file's
//!   `dictionaries` table), with the content size in it. A stored body is told apart by its
//!   first bytes: `{` is plain JSON (every body written before schema v10, and types without a
//!   dictionary yet), zstd's magic number a frame, `vai:` an encrypted envelope (see
//!   `sealed`), which is opened first and may hold either.
//! - **Why a dictionary.** Kubernetes objects of one type repeat the same keys, images,
//!   labels and status shapes; a 64 KiB dictionary trained from a thousand of them makes each
//!   body a few hundred bytes (the `floor` bench: 5 KB generated pods to 0.06 of their size,
//!   decompressed at ~3 GB/s on one core), where zstd alone on one 5 KB body gets ~0.3.
//! - **When.** The writer gathers the bodies of a type it has no dictionary for (at most
//!   [`SAMPLE_OBJECTS`] or [`SAMPLE_BYTES`]), and trains once it holds enough; the dictionary
//!   is committed in a transaction of its own before any row uses it, so no row ever names a
//!   dictionary the file lacks. Until then the type's bodies are stored plain, and stay plain
//!   until they change. Types with little data never get one (nothing to gain).
//! - **Drift.** The writer keeps, per dictionary, how many bytes went in and came out; when
//!   the recent ratio is much worse than the one measured at training (objects changed
//!   shape), it samples again and trains a new dictionary, which later writes use. Older
//!   dictionaries stay in the file for the rows that use them.
//! - **Never** for encrypted types: a dictionary is stored in the clear and is made of pieces
//!   of the bodies it was trained on.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

use crate::{Error, Result};

/// The bodies of a type gathered before its dictionary is trained, at most.
pub const SAMPLE_OBJECTS: usize = 1000;
/// … and at most these many bytes of them: enough to train on is enough.
pub const SAMPLE_BYTES: usize = 4 << 20;
/// Less than this of a type's bodies is not worth a dictionary (yet).
const MIN_SAMPLE_BYTES: usize = 256 << 10;
/// At least this many bodies to train on.
const MIN_SAMPLE_OBJECTS: usize = 64;
/// The largest dictionary (zstd's own default size is 110 KB; 64 KiB measured as good).
const DICTIONARY_BYTES: usize = 64 << 10;
/// zstd's level for bodies: 1 and 3 compress the generated pods alike (0.058 / 0.056), 1
/// is the faster (`floor` bench).
const LEVEL: i32 = 1;
/// Bodies smaller than this are stored plain: a frame's header is most of what they would save.
const MIN_BODY: usize = 64;
/// How many bytes go through a dictionary between checks of its ratio.
const DRIFT_WINDOW: u64 = 16 << 20;
/// A dictionary is retrained when its recent ratio is this many times the trained one.
const DRIFT_FACTOR: f64 = 1.5;

/// zstd's frame magic number, little-endian, as a frame starts.
const FRAME_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A trained dictionary, prepared for both directions.
pub(crate) struct Dictionary {
    id: u32,
    resource: String,
    encoder: CDict<'static>,
    decoder: DDict<'static>,
    /// The ratio measured on its own samples when trained.
    trained_ratio: f64,
    /// Bytes compressed with it since the file opened, in and out.
    plain_bytes: AtomicU64,
    stored_bytes: AtomicU64,
}

impl Dictionary {
    fn new(id: u32, resource: String, content: &[u8], trained_ratio: f64) -> Result<Dictionary> {
        let broken = || Error::Corrupt(format!("compression dictionary {id} does not load"));
        Ok(Dictionary {
            id,
            resource,
            encoder: CDict::try_create(content, LEVEL).ok_or_else(broken)?,
            decoder: DDict::try_create(content).ok_or_else(broken)?,
            trained_ratio,
            plain_bytes: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
        })
    }
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// How a type's bodies are compressed, for `vai status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Compression {
    /// The dictionary new bodies are compressed with.
    pub dictionary: u32,
    /// How many dictionaries the type has had (retrained when its objects changed shape).
    pub dictionaries: u32,
    /// Stored bytes over plain bytes, for what was written with it: measured on its training
    /// samples, then over every body since (as of its last check).
    pub ratio: f64,
}

/// What a type's bodies take at rest, history included (see
/// [`Store::footprint`](crate::Store::footprint)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Footprint {
    /// Stored versions: the current objects and their history.
    pub versions: u64,
    /// Bytes of their bodies as stored.
    pub stored_bytes: u64,
    /// Bytes of the same bodies as JSON; `None` when some of them are encrypted (a sealed
    /// body's plain size is not read).
    pub plain_bytes: Option<u64>,
}

impl Footprint {
    /// Stored bytes over plain bytes (1 for bodies stored as they are).
    pub fn ratio(&self) -> Option<f64> {
        match self.plain_bytes {
            Some(0) | None => None,
            Some(plain) => Some(self.stored_bytes as f64 / plain as f64),
        }
    }
}

/// Every type's [`Footprint`], from the stored bodies' lengths and frame headers.
pub(crate) fn footprint(conn: &Connection) -> Result<BTreeMap<String, Footprint>> {
    let names: HashMap<i64, String> = conn
        .prepare("SELECT id, key FROM resources")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut by_id: HashMap<i64, Footprint> = HashMap::new();
    let mut rows = conn.prepare("SELECT resource_id, body FROM versions")?;
    let mut rows = rows.query([])?;
    while let Some(row) = rows.next()? {
        let body = row.get_ref(1)?.as_bytes().map_err(rusqlite::Error::from)?;
        let entry = by_id.entry(row.get(0)?).or_insert_with(|| Footprint {
            plain_bytes: Some(0),
            ..Footprint::default()
        });
        entry.versions += 1;
        entry.stored_bytes += body.len() as u64;
        entry.plain_bytes = entry.plain_bytes.zip(plain_size(body)).map(|(a, b)| a + b);
    }
    Ok(by_id
        .into_iter()
        .filter_map(|(id, f)| Some((names.get(&id)?.clone(), f)))
        .collect())
}

/// The dictionaries of one file, shared by its writer and readers (see the [module](self)).
#[derive(Debug, Default)]
pub(crate) struct Codec {
    /// Off: new bodies are stored plain (stored frames still open).
    enabled: bool,
    /// Where to look for a dictionary another process added since the open.
    path: Option<PathBuf>,
    by_id: RwLock<HashMap<u32, Arc<Dictionary>>>,
    /// The dictionary each type's new bodies are written with (the writer's latest).
    current: RwLock<HashMap<String, Arc<Dictionary>>>,
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<CCtx<'static>> = std::cell::RefCell::new(CCtx::create());
    static DECOMPRESSOR: std::cell::RefCell<DCtx<'static>> = std::cell::RefCell::new(DCtx::create());
}

impl Codec {
    /// The dictionaries recorded in the file `conn` reads (a file from before schema v10, read
    /// only, has none).
    pub fn load(conn: &Connection, path: &Path, enabled: bool) -> Result<Codec> {
        let codec = Codec {
            enabled,
            path: Some(path.to_path_buf()),
            ..Codec::default()
        };
        let has_table: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'dictionaries'",
            [],
            |r| r.get(0),
        )?;
        if !has_table {
            return Ok(codec);
        }
        let rows: Vec<(u32, String, Vec<u8>, f64)> = conn
            .prepare("SELECT id, resource, content, trained_ratio FROM dictionaries ORDER BY id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, resource, content, ratio) in rows {
            let dict = Arc::new(Dictionary::new(id, resource.clone(), &content, ratio)?);
            codec.by_id.write().expect("lock").insert(id, dict.clone());
            // Ordered by id: the newest of each type is the one it writes with.
            codec.current.write().expect("lock").insert(resource, dict);
        }
        Ok(codec)
    }

    /// The bytes to store for a body of `resource`: a frame with its type's dictionary, or
    /// the body itself when the type has none (or compression is off, or it is tiny).
    pub fn compress<'a>(&self, resource: &str, plain: &'a [u8]) -> Cow<'a, [u8]> {
        if !self.enabled || plain.len() < MIN_BODY {
            return Cow::Borrowed(plain);
        }
        let Some(dict) = self.current.read().expect("lock").get(resource).cloned() else {
            return Cow::Borrowed(plain);
        };
        match compress_with(&dict, plain) {
            Some(out) => {
                dict.plain_bytes
                    .fetch_add(plain.len() as u64, Ordering::Relaxed);
                dict.stored_bytes
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(plain),
        }
    }

    /// The plain body of stored bytes: decompressed if they are a frame, themselves if not.
    pub fn decompress<'a>(&self, stored: Cow<'a, [u8]>) -> Result<Cow<'a, [u8]>> {
        if !stored.starts_with(&FRAME_MAGIC) {
            return Ok(stored);
        }
        let mut out = Vec::new();
        self.decompress_into(&stored, &mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Appends the plain body of a frame to `out` (which it leaves as it was on an error).
    fn decompress_into(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let broken =
            |why: String| Error::Corrupt(format!("a stored body does not decompress: {why}"));
        let id = zstd_safe::get_dict_id_from_frame(frame)
            .ok_or_else(|| broken("its frame names no dictionary".into()))?
            .get();
        let size = match zstd_safe::get_frame_content_size(frame) {
            Ok(Some(size)) => size as usize,
            _ => return Err(broken("its frame has no content size".into())),
        };
        let dict = self.dictionary(id)?;
        let start = out.len();
        out.reserve(size);
        let mut tail = std::io::Cursor::new(&mut *out);
        tail.set_position(start as u64);
        let done = DECOMPRESSOR.with(|d| {
            d.borrow_mut()
                .decompress_using_ddict(&mut tail, frame, &dict.decoder)
        });
        match done {
            Ok(n) if n == size => Ok(()),
            Ok(n) => {
                out.truncate(start);
                Err(broken(format!("{n} bytes where its frame says {size}")))
            }
            Err(code) => {
                out.truncate(start);
                Err(broken(zstd_safe::get_error_name(code).to_string()))
            }
        }
    }

    /// A dictionary by id: known, or read from the file (a writer in another process trained
    /// it after this one opened).
    fn dictionary(&self, id: u32) -> Result<Arc<Dictionary>> {
        if let Some(dict) = self.by_id.read().expect("lock").get(&id) {
            return Ok(dict.clone());
        }
        let missing = || {
            Error::Corrupt(format!(
                "a stored body names compression dictionary {id}, which the file lacks"
            ))
        };
        let path = self.path.as_ref().ok_or_else(missing)?;
        let conn = crate::schema::open_reader(path)?;
        let row: Option<(String, Vec<u8>, f64)> = conn
            .query_row(
                "SELECT resource, content, trained_ratio FROM dictionaries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (resource, content, ratio) = row.ok_or_else(missing)?;
        let dict = Arc::new(Dictionary::new(id, resource, &content, ratio)?);
        self.by_id.write().expect("lock").insert(id, dict.clone());
        Ok(dict)
    }

    /// Makes a committed dictionary the one its type's new bodies are written with.
    fn adopt(&self, dict: Arc<Dictionary>) {
        self.by_id
            .write()
            .expect("lock")
            .insert(dict.id, dict.clone());
        self.current
            .write()
            .expect("lock")
            .insert(dict.resource.clone(), dict);
    }

    /// How each type's bodies are compressed (types with a dictionary only).
    pub fn report(&self) -> HashMap<String, Compression> {
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let by_id = self.by_id.read().expect("lock");
        for dict in by_id.values() {
            *counts.entry(&dict.resource).or_default() += 1;
        }
        self.current
            .read()
            .expect("lock")
            .iter()
            .map(|(resource, dict)| {
                let plain = dict.plain_bytes.load(Ordering::Relaxed);
                let ratio = match plain {
                    0 => dict.trained_ratio,
                    _ => dict.stored_bytes.load(Ordering::Relaxed) as f64 / plain as f64,
                };
                let compression = Compression {
                    dictionary: dict.id,
                    dictionaries: counts.get(resource.as_str()).copied().unwrap_or(1),
                    ratio,
                };
                (resource.clone(), compression)
            })
            .collect()
    }
}

/// The size of the plain body that `stored` holds: its own for plain JSON, its frame's content
/// size for a frame (read from the header, nothing decompressed); `None` for an encrypted
/// envelope, whose size is known only once opened.
pub(crate) fn plain_size(stored: &[u8]) -> Option<u64> {
    if stored.starts_with(crate::sealed::PREFIX) {
        return None;
    }
    if !stored.starts_with(&FRAME_MAGIC) {
        return Some(stored.len() as u64);
    }
    match zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) => Some(size),
        _ => None,
    }
}

/// A frame of `plain` with `dict`; `None` when that gains nothing (or zstd fails, which it
/// does not into a buffer of its bound): then the body is stored as it is.
fn compress_with(dict: &Dictionary, plain: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(plain.len()));
    COMPRESSOR
        .with(|c| {
            c.borrow_mut()
                .compress_using_cdict(&mut out, plain, &dict.encoder)
        })
        .ok()?;
    (out.len() < plain.len()).then_some(out)
}

/// What the writer knows of one type's training.
#[derive(Default)]
struct Samples {
    bodies: Vec<Vec<u8>>,
    bytes: usize,
    /// Set while the type's dictionary is being replaced (its ratio drifted).
    retraining: bool,
    /// Where its dictionary's byte counts stood at the last check of its ratio.
    checked: (u64, u64),
    /// A training that failed waits for this many more bytes of samples.
    wait_for: usize,
}

/// The writer's side of compression: gathers samples, trains dictionaries and commits them
/// (see the [module](self)). Owned by the writer thread.
#[derive(Default)]
pub(crate) struct Trainer {
    types: HashMap<String, Samples>,
}

impl Trainer {
    /// Sees the bodies about to be written for `resource`; trains, commits and adopts its
    /// dictionary when it has enough of them. Runs between the writer's transactions (the
    /// dictionary's own commit must come first). A failure to train is logged and tried
    /// again with more samples; the bodies are then stored plain, which loses nothing.
    pub fn observe<'b>(
        &mut self,
        conn: &Connection,
        codec: &Codec,
        resource: &str,
        bodies: impl Iterator<Item = &'b [u8]>,
    ) {
        if !codec.enabled {
            return;
        }
        let current = codec.current.read().expect("lock").get(resource).cloned();
        let samples = self.types.entry(resource.to_string()).or_default();
        if let Some(dict) = &current
            && !samples.retraining
        {
            samples.retraining = drifted(dict, &mut samples.checked);
            if !samples.retraining {
                return;
            }
            tracing::info!(
                resource,
                dictionary = dict.id,
                "bodies compress much worse than when the dictionary was trained; training another"
            );
        }
        for body in bodies {
            if samples.bodies.len() >= SAMPLE_OBJECTS || samples.bytes >= SAMPLE_BYTES {
                break;
            }
            samples.bytes += body.len();
            samples.bodies.push(body.to_vec());
        }
        let ready = samples.bodies.len() >= MIN_SAMPLE_OBJECTS
            && samples.bytes >= MIN_SAMPLE_BYTES.max(samples.wait_for);
        if !ready {
            return;
        }
        let started = std::time::Instant::now();
        match train_and_commit(conn, resource, &samples.bodies) {
            Ok(dict) => {
                tracing::info!(resource, dictionary = dict.id, samples = samples.bodies.len(),
                    ratio = format!("{:.3}", dict.trained_ratio), took = ?started.elapsed(),
                    "trained a compression dictionary");
                self.types.remove(resource);
                codec.adopt(Arc::new(dict));
            }
            Err(e) => {
                tracing::warn!(resource, error = %e, samples = samples.bodies.len(),
                    "training a compression dictionary failed; its bodies stay plain for now");
                samples.wait_for = (samples.bytes * 2).min(SAMPLE_BYTES);
                samples.bodies.clear();
                samples.bytes = 0;
            }
        }
    }
}

/// Whether a dictionary's ratio over the bytes since its last check is much worse than at
/// training; moves the check mark when a window has passed.
fn drifted(dict: &Dictionary, checked: &mut (u64, u64)) -> bool {
    let plain = dict.plain_bytes.load(Ordering::Relaxed);
    let stored = dict.stored_bytes.load(Ordering::Relaxed);
    if plain < checked.0 + DRIFT_WINDOW {
        return false;
    }
    let recent = (stored - checked.1) as f64 / (plain - checked.0) as f64;
    *checked = (plain, stored);
    recent > dict.trained_ratio * DRIFT_FACTOR && recent - dict.trained_ratio > 0.02
}

/// Trains a dictionary from `samples`, gives it the next id, measures it on them and commits
/// it to the file.
fn train_and_commit(conn: &Connection, resource: &str, samples: &[Vec<u8>]) -> Result<Dictionary> {
    let total: usize = samples.iter().map(Vec::len).sum();
    let size = DICTIONARY_BYTES.min(total / 8).max(1024);
    let mut content = zstd::dict::from_samples(samples, size)
        .map_err(|e| Error::Corrupt(format!("zstd could not train a dictionary: {e}")))?;
    let next: u32 = conn.query_row(
        "SELECT coalesce(max(id), 0) + 1 FROM dictionaries",
        [],
        |r| r.get(0),
    )?;
    set_id(&mut content, next)?;
    let mut dict = Dictionary::new(next, resource.to_string(), &content, 1.0)?;
    let stored: usize = samples
        .iter()
        .map(|s| compress_with(&dict, s).map_or(s.len(), |f| f.len()))
        .sum();
    dict.trained_ratio = stored as f64 / total as f64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    conn.execute(
        "INSERT INTO dictionaries (id, resource, trained_ms, samples, trained_ratio, content)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            next,
            resource,
            now_ms,
            samples.len() as i64,
            dict.trained_ratio,
            content
        ],
    )?;
    Ok(dict)
}

/// Sets a trained dictionary's id (the 4 bytes after its magic number, little-endian, as
/// zstd's format defines them), which zstd then writes into each frame's header.
fn set_id(content: &mut [u8], id: u32) -> Result<()> {
    const DICT_MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];
    if content.len() < 8 || content[..4] != DICT_MAGIC {
        return Err(Error::Corrupt(
            "zstd trained a dictionary without its header".into(),
        ));
    }
    content[4..8].copy_from_slice(&id.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A file with the schema (and so the `dictionaries` table), and its codec.
    fn file() -> (tempfile::TempDir, Connection, Codec) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codec.db");
        let conn = crate::schema::open_writer(&path).unwrap();
        let codec = Codec::load(&conn, &path, true).unwrap();
        (dir, conn, codec)
    }

    /// Bodies of one shape: the same keys, values from a small vocabulary.
    fn shaped(n: usize, shape: &str) -> Vec<Vec<u8>> {
        let mut rng = vai_testenv::workload::Rng(7);
        (0..n)
            .map(|i| {
                let fields: Vec<String> = (0..40)
                    .map(|k| {
                        let v = rng.pick(&["alpha", "beta", "gamma", "delta", "epsilon"]);
                        format!("\"{shape}-field-{k}\":\"{v}-{}\"", rng.next_u64() % 10)
                    })
                    .collect();
                format!("{{\"n\":{i},{}}}", fields.join(",")).into_bytes()
            })
            .collect()
    }

    fn observe(trainer: &mut Trainer, conn: &Connection, codec: &Codec, bodies: &[Vec<u8>]) {
        trainer.observe(conn, codec, "/v1/pods", bodies.iter().map(Vec::as_slice));
    }

    #[test]
    fn a_type_gets_a_dictionary_once_it_has_enough_and_its_bodies_round_trip() {
        let (_dir, conn, codec) = file();
        let mut trainer = Trainer::default();
        let bodies = shaped(2000, "a");
        // Too little to train on: stored plain.
        observe(&mut trainer, &conn, &codec, &bodies[..10]);
        assert!(matches!(
            codec.compress("/v1/pods", &bodies[0]),
            Cow::Borrowed(_)
        ));
        observe(&mut trainer, &conn, &codec, &bodies[10..]);
        let report = codec.report();
        let compression = &report["/v1/pods"];
        assert_eq!((compression.dictionary, compression.dictionaries), (1, 1));
        assert!(compression.ratio < 0.5, "{compression:?}");
        let stored: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| codec.compress("/v1/pods", b).into_owned())
            .collect();
        let (plain, packed): (usize, usize) = (
            bodies.iter().map(Vec::len).sum(),
            stored.iter().map(Vec::len).sum(),
        );
        assert!(packed * 3 < plain, "{packed} of {plain} bytes");
        for (body, stored) in bodies.iter().zip(&stored) {
            assert!(stored.starts_with(&FRAME_MAGIC));
            assert_eq!(*codec.decompress(Cow::Borrowed(stored)).unwrap(), **body);
        }
        // Another type has no dictionary; a plain body reads as itself.
        assert!(matches!(
            codec.compress("/v1/nodes", &bodies[0]),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            *codec.decompress(Cow::Borrowed(&bodies[0])).unwrap(),
            *bodies[0]
        );
        // A second codec on the same file (a reader that opened before the training) finds the
        // dictionary in the file.
        let later = Codec {
            path: codec.path.clone(),
            ..Codec::default()
        };
        assert_eq!(
            *later.decompress(Cow::Borrowed(&stored[5])).unwrap(),
            *bodies[5]
        );
    }

    #[test]
    fn a_dictionary_is_retrained_when_bodies_drift_and_old_frames_still_open() {
        let (_dir, conn, codec) = file();
        let mut trainer = Trainer::default();
        let first = shaped(1000, "first");
        observe(&mut trainer, &conn, &codec, &first);
        let old = codec.compress("/v1/pods", &first[0]).into_owned();
        assert_eq!(codec.report()["/v1/pods"].dictionary, 1);
        // Bodies of another shape go through the old dictionary until a window shows the drift.
        let second: Vec<Vec<u8>> = vai_testenv::workload::pods(5500);
        let with_old = codec.compress("/v1/pods", &second[0]).len();
        let mut written = 0;
        while codec.report()["/v1/pods"].dictionary == 1 {
            let chunk = &second[written % 5000..written % 5000 + 500];
            for body in chunk {
                codec.compress("/v1/pods", body);
            }
            observe(&mut trainer, &conn, &codec, chunk);
            written += 500;
            assert!(
                written < 200_000,
                "never retrained: {:?}, trained {}",
                codec.report(),
                codec.current.read().unwrap()["/v1/pods"].trained_ratio
            );
        }
        let report = codec.report();
        assert_eq!(
            (
                report["/v1/pods"].dictionary,
                report["/v1/pods"].dictionaries
            ),
            (2, 2)
        );
        let new = codec.compress("/v1/pods", &second[0]).into_owned();
        assert_eq!(zstd_safe::get_dict_id_from_frame(&new).unwrap().get(), 2);
        assert!(
            new.len() < with_old,
            "{} bytes with the new dictionary, {with_old} with the old",
            new.len()
        );
        assert_eq!(*codec.decompress(Cow::Borrowed(&old)).unwrap(), *first[0]);
        assert_eq!(*codec.decompress(Cow::Borrowed(&new)).unwrap(), *second[0]);
        // Reopened, each type writes with its newest dictionary.
        let reopened = Codec::load(&conn, codec.path.as_ref().unwrap(), true).unwrap();
        assert_eq!(reopened.report()["/v1/pods"].dictionary, 2);
    }

    #[test]
    fn a_frame_that_does_not_decompress_is_an_error_not_a_body() {
        let (_dir, conn, codec) = file();
        let mut trainer = Trainer::default();
        let bodies = shaped(1000, "a");
        observe(&mut trainer, &conn, &codec, &bodies);
        let frame = codec.compress("/v1/pods", &bodies[0]).into_owned();
        let truncated = &frame[..frame.len() - 3];
        assert!(matches!(
            codec.decompress(Cow::Borrowed(truncated)),
            Err(Error::Corrupt(_))
        ));
        // A frame naming a dictionary the file lacks.
        let mut content: Vec<u8> = conn
            .query_row("SELECT content FROM dictionaries WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        set_id(&mut content, 99).unwrap();
        let stranger = Dictionary::new(99, "/v1/pods".into(), &content, 0.1).unwrap();
        let unknown = compress_with(&stranger, &bodies[0]).unwrap();
        match codec.decompress(Cow::Borrowed(&unknown)) {
            Err(Error::Corrupt(why)) => assert!(why.contains("dictionary 99"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut flipped = frame;
        let at = flipped.len() / 2;
        flipped[at] ^= 0xff;
        match codec.decompress(Cow::Borrowed(&flipped)) {
            Err(Error::Corrupt(_)) => {}
            // zstd has no checksum by default: a flipped byte may decode to other bytes, never
            // to a panic or a body of the wrong length.
            Ok(body) => assert_eq!(body.len(), bodies[0].len()),
            Err(other) => panic!("{other}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any body (a JSON object's first byte, then anything), of the trained shape or not,
        /// tiny or large, compressible or random, comes back byte for byte.
        #[test]
        fn any_body_round_trips(
            bodies in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..3000),
                    "[a-z\"{}:,0-9 ]{0,4000}".prop_map(String::into_bytes),
                ]
                .prop_map(|tail| [b"{".as_slice(), &tail].concat()),
                1..20,
            ),
        ) {
            static FILE: std::sync::OnceLock<(tempfile::TempDir, Codec)> = std::sync::OnceLock::new();
            let (_, codec) = FILE.get_or_init(|| {
                let (dir, conn, codec) = file();
                let mut trainer = Trainer::default();
                observe(&mut trainer, &conn, &codec, &shaped(1000, "p"));
                (dir, codec)
            });
            for body in &bodies {
                let stored = codec.compress("/v1/pods", body);
                prop_assert!(stored.len() <= body.len());
                let back = codec.decompress(stored).unwrap();
                prop_assert_eq!(&*back, &body[..]);
            }
        }
    }
}

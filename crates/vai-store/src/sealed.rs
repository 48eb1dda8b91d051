//! Rows encrypted at rest: the one place that turns a stored body (or table cells) into the
//! bytes kept in the file and back ([`Sealer`]), and that checks at open that the key file
//! fits the database ([`prepare`], [`check`]).
//!
//! - **What is encrypted.** The body and the table cells of every version (current, history,
//!   tombstones) of the types [`crate::Encryption`] names (`secrets` in the usual file). They
//!   are encrypted before SQLite sees them, so the database file, its WAL (which holds page
//!   images), SQLite's temporary files and the writer's savepoint journals hold only
//!   ciphertext. Namespaces, names, labels, indexed field values (for secrets: `type`) and
//!   creation times stay readable: they are what the indexes, selectors and counts work on.
//! - **The envelope**: `vai:aesgcm:v1:<key name>:` then a random 96-bit nonce, then the
//!   AES-256-GCM ciphertext and its 16-byte tag; like the apiserver's `k8s:enc:aesgcm:v1:NAME:`
//!   prefix, the key name tells which key opens it. The authenticated data is the row's
//!   place (type, namespace, name, and whether it is the body or the cells), so a sealed body
//!   moved to another object's row does not open. A JSON body starts with `{`: whatever does
//!   not start with the envelope's prefix is plain.
//! - **Reads** open every body through [`Sealer::open`]: a sealed one decrypts or is an
//!   [`Error::Undecryptable`], never bytes served as if JSON.
//! - **The records** (schema v9): `sealing_keys` holds, per key in use, a check value (a known
//!   text sealed with it: the key is never stored, and a wrong key fails to open it), and
//!   `sealed_resources` which key every row of an encrypted type is sealed with. At open a
//!   missing or wrong key is refused before anything is read; then, in one transaction, each
//!   type whose key changed — encryption turned on for a type that has plain rows, a key
//!   rotated, `identity` put first to turn it off — has its rows rewritten under its new key,
//!   and the file is vacuumed and its WAL truncated, so no plaintext (nor ciphertext under the
//!   retired key) is left in free pages. Afterwards exactly one key per type is in use: a
//!   rotated-out key may leave the key file once vai has started once with the new key first.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, params};

use crate::codec::Codec;
use crate::{Encryption, Error, Result};

/// What every sealed value starts with (before the key name).
pub(crate) const PREFIX: &[u8] = b"vai:aesgcm:v1:";
/// AES-GCM's tag.
const TAG_LEN: usize = 16;
/// The known text sealed as a key's check value.
const CHECK_TEXT: &[u8] = b"vai key check";

/// Where a sealed value lives: part of its authenticated data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place<'a> {
    /// The store key of its type (`/v1/secrets`).
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Which column of a version.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Part {
    Body,
    Cells,
}

impl Place<'_> {
    fn aad(&self, part: Part) -> Vec<u8> {
        let tag: &[u8] = match part {
            Part::Body => b"body",
            Part::Cells => b"cells",
        };
        [
            tag,
            self.resource.as_bytes(),
            self.namespace.as_bytes(),
            self.name.as_bytes(),
        ]
        .join(&0)
    }

    fn describe(&self) -> String {
        match self.namespace {
            "" => format!("{} {}", self.resource, self.name),
            ns => format!("{} {ns}/{}", self.resource, self.name),
        }
    }
}

/// Seals and opens a store's rows (see the [module](self)); compresses bodies before sealing
/// and decompresses them after opening (see [`crate::codec`]).
#[derive(Debug, Default)]
pub(crate) struct Sealer {
    encryption: Option<Encryption>,
    random: Random,
    codec: Codec,
}

struct Random(SystemRandom);

impl Default for Random {
    fn default() -> Random {
        Random(SystemRandom::new())
    }
}

impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemRandom")
    }
}

impl Sealer {
    /// A sealer that compresses nothing (the unit tests').
    #[cfg(test)]
    fn new(encryption: Option<Encryption>) -> Sealer {
        Sealer::with_codec(encryption, Codec::default())
    }

    /// A sealer that neither encrypts nor compresses (a backend that stores bodies plain).
    pub(crate) fn plain() -> Sealer {
        Sealer::with_codec(None, Codec::default())
    }

    /// A sealer for a file opened with this configuration (checked by [`prepare`]/[`check`]).
    fn with_codec(encryption: Option<Encryption>, codec: Codec) -> Sealer {
        Sealer {
            encryption,
            random: Random::default(),
            codec,
        }
    }

    /// The file's compression dictionaries.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The key that seals what is written of `resource`, if any.
    pub fn writes_with(&self, resource: &str) -> Option<&str> {
        Some(self.encryption.as_ref()?.writes_with(resource)?.0)
    }

    /// The bytes to store for `plain` at `place`: sealed if its type is encrypted, a body
    /// compressed if it is not (and its type has a dictionary).
    pub fn seal<'a>(&self, place: Place, part: Part, plain: &'a [u8]) -> Cow<'a, [u8]> {
        match self
            .encryption
            .as_ref()
            .and_then(|e| e.writes_with(place.resource))
        {
            Some((name, key)) => Cow::Owned(self.seal_with(name, key, &place.aad(part), plain)),
            None if part == Part::Body => self.codec.compress(place.resource, plain),
            None => Cow::Borrowed(plain),
        }
    }

    /// [`Sealer::seal`] for an optional column.
    pub fn seal_opt<'a>(
        &self,
        place: Place,
        part: Part,
        plain: Option<&'a [u8]>,
    ) -> Option<Cow<'a, [u8]>> {
        plain.map(|p| self.seal(place, part, p))
    }

    fn seal_with(&self, name: &str, key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .0
            .fill(&mut nonce)
            .expect("the system's random source works");
        let head = PREFIX.len() + name.len() + 1 + NONCE_LEN;
        let mut out = Vec::with_capacity(head + plain.len() + TAG_LEN);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[head..],
            )
            .expect("AES-GCM seals any body vai stores");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The plain bytes of a stored value at `place`: itself if not sealed, decrypted if
    /// sealed, an error if it does not decrypt (unknown key, tampered, moved).
    pub fn open<'a>(&self, place: Place, part: Part, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let opened = self.unseal(place, part, stored)?;
        match part {
            Part::Body => self.codec.decompress(opened),
            Part::Cells => Ok(opened),
        }
    }

    /// [`Sealer::open`] without decompressing.
    fn unseal<'a>(&self, place: Place, part: Part, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let Some(envelope) = Envelope::parse(stored) else {
            return Ok(Cow::Borrowed(stored));
        };
        let fail = |why: &str| Error::Undecryptable(place.describe(), why.to_string());
        let key = self
            .encryption
            .as_ref()
            .and_then(|e| e.key(envelope.key))
            .ok_or_else(|| fail(&format!("no key `{}`", envelope.key)))?;
        open_with(key, &envelope, &place.aad(part))
            .map(Cow::Owned)
            .ok_or_else(|| fail("authentication failed (tampered, or not this row's)"))
    }

    /// [`Sealer::open`] for an optional column.
    pub fn open_opt<'a>(
        &self,
        place: Place,
        part: Part,
        stored: Option<&'a [u8]>,
    ) -> Result<Option<Cow<'a, [u8]>>> {
        stored.map(|s| self.open(place, part, s)).transpose()
    }
}

/// A sealed value's parts.
struct Envelope<'a> {
    key: &'a str,
    nonce: [u8; NONCE_LEN],
    sealed: &'a [u8],
}

impl Envelope<'_> {
    /// `None`: not sealed (a sealed value whose envelope is damaged counts as sealed with
    /// key `""`, which no file holds, so it fails to open rather than being served).
    fn parse(stored: &[u8]) -> Option<Envelope<'_>> {
        let rest = stored.strip_prefix(PREFIX)?;
        let damaged = Envelope {
            key: "",
            nonce: [0; NONCE_LEN],
            sealed: &[],
        };
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            return Some(damaged);
        };
        let (key, rest) = (&rest[..colon], &rest[colon + 1..]);
        match (std::str::from_utf8(key), rest.len() >= NONCE_LEN + TAG_LEN) {
            (Ok(key), true) => Some(Envelope {
                key,
                nonce: rest[..NONCE_LEN].try_into().expect("nonce length"),
                sealed: &rest[NONCE_LEN..],
            }),
            _ => Some(damaged),
        }
    }
}

fn open_with(key: &LessSafeKey, envelope: &Envelope, aad: &[u8]) -> Option<Vec<u8>> {
    let mut buf = envelope.sealed.to_vec();
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(envelope.nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(plain_len);
    Some(buf)
}

/// The key names in use and their check values, as the file records them.
fn recorded_keys(conn: &Connection) -> Result<BTreeMap<String, Vec<u8>>> {
    Ok(conn
        .prepare("SELECT name, check_value FROM sealing_keys")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Checks the key file against what the database records: every key its rows are sealed
/// with must be there, and be the same key. Reads only (a read-only open stops here).
pub(crate) fn check(
    conn: &Connection,
    path: &Path,
    encryption: Option<&Encryption>,
    compress: bool,
) -> Result<Sealer> {
    let shown = path.display().to_string();
    let recorded = recorded_keys(conn)?;
    if let Some(first) = recorded.keys().next()
        && encryption.is_none()
    {
        return Err(Error::Encrypted {
            path: shown,
            key: first.clone(),
        });
    }
    if let Some(encryption) = encryption {
        for (name, check_value) in &recorded {
            let key = encryption.key(name).ok_or_else(|| Error::KeyMissing {
                path: shown.clone(),
                key: name.clone(),
            })?;
            let opens = Envelope::parse(check_value)
                .filter(|e| e.key == name)
                .and_then(|e| open_with(key, &e, CHECK_TEXT))
                .is_some_and(|text| text == CHECK_TEXT);
            if !opens {
                return Err(Error::KeyMismatch {
                    path: shown,
                    key: name.clone(),
                });
            }
        }
    }
    Ok(Sealer::with_codec(
        encryption.cloned(),
        Codec::load(conn, path, compress)?,
    ))
}

/// At a writable open: [`check`], then brings every type's rows under the key the file now
/// names for it (see the [module](self)), in one transaction, and records the keys in use.
pub(crate) fn prepare(
    conn: &mut Connection,
    path: &Path,
    encryption: Option<&Encryption>,
    compress: bool,
) -> Result<Sealer> {
    let sealer = check(conn, path, encryption, compress)?;
    let Some(encryption) = encryption else {
        return Ok(sealer);
    };
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let recorded: BTreeMap<String, String> = tx
        .prepare("SELECT resource, key FROM sealed_resources")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let stored: Vec<(i64, String)> = tx
        .prepare("SELECT id, key FROM resources")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // Whether rewritten rows leave plaintext, or ciphertext under a retired key, in free space.
    let mut scrub = false;
    for (rid, resource) in &stored {
        let was = recorded.get(resource).map(String::as_str);
        let now = sealer.writes_with(resource);
        if was == now {
            continue;
        }
        let rows = reseal(&tx, &sealer, *rid, resource)?;
        scrub |= now.is_some() && rows > 0;
        tracing::info!(
            resource,
            from = was.unwrap_or("plain"),
            to = now.unwrap_or("plain"),
            rows,
            "re-encrypted the stored rows of the type"
        );
        match now {
            Some(key) => {
                record_resource(&tx, resource, key)?;
                // A dictionary is made of pieces of the bodies it was trained on: none is
                // kept for a type that is now encrypted (its rows were just rewritten
                // sealed and uncompressed, so none uses one).
                tx.execute("DELETE FROM dictionaries WHERE resource = ?1", [resource])?;
            }
            None => {
                tx.execute(
                    "DELETE FROM sealed_resources WHERE resource = ?1",
                    [resource],
                )?;
            }
        }
    }
    // Types recorded that no longer have a row of their own hold nothing.
    tx.execute(
        "DELETE FROM sealed_resources WHERE resource NOT IN (SELECT key FROM resources)",
        [],
    )?;
    let keys = recorded_keys(&tx)?;
    tx.execute("DELETE FROM sealing_keys", [])?;
    for name in encryption.write_keys() {
        let check_value = match keys.get(name) {
            Some(verified) => verified.clone(),
            None => sealer.seal_with(
                name,
                encryption.key(name).expect("a write key is a key"),
                CHECK_TEXT,
                CHECK_TEXT,
            ),
        };
        tx.execute(
            "INSERT INTO sealing_keys (name, check_value) VALUES (?1, ?2)",
            params![name, check_value],
        )?;
    }
    tx.commit()?;
    if scrub {
        // The old versions of the rewritten rows are in free pages and in the WAL: VACUUM
        // writes a new copy of the file (through the WAL), the checkpoint copies it over the
        // old pages and empties the WAL.
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    Ok(sealer)
}

/// Records that the rows of `resource` are sealed with `key` (the writer, for a type it
/// stores for the first time, and [`prepare`]).
pub(crate) fn record_resource(conn: &Connection, resource: &str, key: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sealed_resources (resource, key) VALUES (?1, ?2)
         ON CONFLICT (resource) DO UPDATE SET key = excluded.key",
    )?
    .execute(params![resource, key])?;
    Ok(())
}

/// Rewrites every version of one type under the key `sealer` now writes it with (or plain);
/// returns how many values changed.
fn reseal(tx: &Connection, sealer: &Sealer, rid: i64, resource: &str) -> Result<u64> {
    let mut changed = 0;
    let mut select =
        tx.prepare("SELECT id, namespace, name, body, cells FROM versions WHERE resource_id = ?1")?;
    let mut update = tx.prepare("UPDATE versions SET body = ?2, cells = ?3 WHERE id = ?1")?;
    let mut rows = select.query([rid])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let (namespace, name): (String, String) = (r.get(1)?, r.get(2)?);
        let place = Place {
            resource,
            namespace: &namespace,
            name: &name,
        };
        let body = r.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
        let cells = r
            .get_ref(4)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?;
        let want = sealer.writes_with(resource);
        let is = |v: &[u8]| Envelope::parse(v).map(|e| e.key.to_string());
        if is(body).as_deref() == want && cells.is_none_or(|c| is(c).as_deref() == want) {
            continue;
        }
        let plain_body = sealer.open(place, Part::Body, body)?;
        let plain_cells = sealer.open_opt(place, Part::Cells, cells)?;
        update.execute(params![
            id,
            sealer.seal(place, Part::Body, &plain_body),
            sealer
                .seal_opt(place, Part::Cells, plain_cells.as_deref())
                .as_deref()
        ])?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::tests::{K1, K2, config};

    const PLACE: Place = Place {
        resource: "/v1/secrets",
        namespace: "ns",
        name: "s",
    };

    #[test]
    fn a_body_round_trips_and_is_not_readable_sealed() {
        let sealer = Sealer::new(Some(config(r#""secrets""#, &[("k1", K1)])));
        let body = br#"{"data":{"password":"aHVudGVyMg=="}}"#;
        let sealed = sealer.seal(PLACE, Part::Body, body);
        assert!(sealed.starts_with(b"vai:aesgcm:v1:k1:"));
        assert!(!sealed.windows(8).any(|w| w == b"aHVudGVy"));
        assert_eq!(
            sealed.len(),
            PREFIX.len() + 3 + NONCE_LEN + body.len() + TAG_LEN
        );
        let again = sealer.seal(PLACE, Part::Body, body);
        assert_ne!(sealed, again, "a fresh nonce each time");
        assert_eq!(&*sealer.open(PLACE, Part::Body, &sealed).unwrap(), body);
        // Types the file does not name are stored as they are.
        let pod = Place {
            resource: "/v1/pods",
            ..PLACE
        };
        assert!(matches!(
            sealer.seal(pod, Part::Body, body),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            sealer.open(pod, Part::Body, body).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_wrong_key_a_tampered_or_moved_value_is_an_error_never_bytes() {
        let sealer = Sealer::new(Some(config(r#""secrets""#, &[("k1", K1)])));
        let sealed = sealer.seal(PLACE, Part::Body, b"{}").into_owned();
        // Same name, another secret.
        let wrong = Sealer::new(Some(config(r#""secrets""#, &[("k1", K2)])));
        assert!(matches!(
            wrong.open(PLACE, Part::Body, &sealed),
            Err(Error::Undecryptable(..))
        ));
        // No such key; no key at all.
        let other = Sealer::new(Some(config(r#""secrets""#, &[("k2", K2)])));
        let e = other.open(PLACE, Part::Body, &sealed).unwrap_err();
        assert!(e.to_string().contains("no key `k1`"), "{e}");
        assert!(Sealer::new(None).open(PLACE, Part::Body, &sealed).is_err());
        // A flipped bit anywhere after the key name.
        for at in PREFIX.len() + 3..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(sealer.open(PLACE, Part::Body, &bad).is_err(), "byte {at}");
        }
        // Cut short, or the envelope damaged.
        assert!(sealer.open(PLACE, Part::Body, &sealed[..30]).is_err());
        assert!(sealer.open(PLACE, Part::Body, b"vai:aesgcm:v1:k1").is_err());
        // Another object's row, or the cells' column.
        let elsewhere = Place {
            name: "other",
            ..PLACE
        };
        assert!(sealer.open(elsewhere, Part::Body, &sealed).is_err());
        assert!(sealer.open(PLACE, Part::Cells, &sealed).is_err());
    }

    #[test]
    fn rotation_reads_with_every_key_and_writes_with_the_first() {
        let old = Sealer::new(Some(config(r#""secrets""#, &[("k1", K1)])));
        let sealed = old.seal(PLACE, Part::Body, b"{\"a\":1}").into_owned();
        let rotated = Sealer::new(Some(config(r#""secrets""#, &[("k2", K2), ("k1", K1)])));
        assert_eq!(
            &*rotated.open(PLACE, Part::Body, &sealed).unwrap(),
            b"{\"a\":1}"
        );
        let new = rotated.seal(PLACE, Part::Body, b"{\"a\":2}");
        assert!(new.starts_with(b"vai:aesgcm:v1:k2:"));
        assert!(old.open(PLACE, Part::Body, &new).is_err());
    }

    #[test]
    fn the_cost_of_sealing_and_opening_a_body() {
        // Not an assertion of speed: prints what one body costs (run with --nocapture).
        let sealer = Sealer::new(Some(config(r#""secrets""#, &[("k1", K1)])));
        let body = vec![b'x'; 2048];
        let n = 20_000;
        let started = std::time::Instant::now();
        let mut sealed = Vec::new();
        for _ in 0..n {
            sealed = sealer.seal(PLACE, Part::Body, &body).into_owned();
        }
        let sealing = started.elapsed() / n;
        let started = std::time::Instant::now();
        for _ in 0..n {
            assert_eq!(sealer.open(PLACE, Part::Body, &sealed).unwrap().len(), 2048);
        }
        let opening = started.elapsed() / n;
        println!("2 KiB body: seal {sealing:?}, open {opening:?}");
    }
}

//! Watch events that arrive while a list is still being stored, held on disk until it is.
//!
//! A list of a large type under churn takes minutes (100,000 Pods under 500 changes/s on a
//! 2-core apiserver: three to ten), longer than upstream keeps history, so a watch opened from
//! the list's version after the list is refused `410` and the type is listed again, forever.
//! The reflector therefore opens the watch as soon as the list's first page gives its version
//! and keeps reading it meanwhile; the events wait here, in order, and are applied after the
//! list. A [`Spool`] is an unnamed file in the database's directory (private; gone when
//! dropped, or when the process dies): memory holds one event at a time, whatever the backlog.
//! Each record is sealed (AES-256-GCM) with a key made for the spool that never leaves memory,
//! so what the disk keeps of a spooled Secret — even after a crash — is unreadable.
//!
//! This module never interprets events: what it is given comes back, in the same order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use vai_store::{EventKind, Item};

use crate::upstream::WatchEvent;

/// Tag of a bookmark record (object records are tagged with their [`EventKind`]).
const BOOKMARK: u8 = EventKind::Bookmark as u8;
/// Length of absent table cells.
const NO_CELLS: u32 = u32::MAX;

/// A first-in first-out queue of watch events in a file. See the [module](self).
pub(crate) struct Spool {
    file: File,
    /// The key records are sealed with: random, this spool's only, in memory only.
    key: LessSafeKey,
    /// Where the next event is written.
    end: u64,
    /// Where the next event is read.
    start: u64,
    /// Events written ever: the next record's nonce (never reused under one key).
    written: u64,
    /// Events read ever: the nonce of the next record read.
    read: u64,
}

impl Spool {
    /// An empty spool in `dir`.
    pub fn new(dir: &Path) -> io::Result<Spool> {
        let mut key = [0; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| io::Error::other("the system's random source failed"))?;
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("a 256-bit key");
        Ok(Spool {
            file: tempfile::tempfile_in(dir)?,
            key: LessSafeKey::new(key),
            end: 0,
            start: 0,
            written: 0,
            read: 0,
        })
    }

    fn nonce(counter: u64) -> Nonce {
        let mut nonce = [0; 12];
        nonce[4..].copy_from_slice(&counter.to_le_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    /// Events waiting.
    pub fn len(&self) -> u64 {
        self.written - self.read
    }

    /// Appends an ADDED, MODIFIED, DELETED or BOOKMARK event (anything else is not the
    /// spool's to keep: the caller acts on errors).
    pub fn push(&mut self, event: &WatchEvent) -> io::Result<()> {
        let mut record = Vec::new();
        match event {
            WatchEvent::Object(kind, item) => {
                record.push(*kind as u8);
                put_bytes(&mut record, Some(&item.object));
                put_bytes(&mut record, item.cells.as_deref());
            }
            WatchEvent::Bookmark(rv) => {
                record.push(BOOKMARK);
                record.extend_from_slice(&rv.to_le_bytes());
            }
            WatchEvent::Error(_) => {
                return Err(io::Error::other("an error event is not spooled"));
            }
        }
        self.key
            .seal_in_place_append_tag(Self::nonce(self.written), Aad::empty(), &mut record)
            .map_err(|_| io::Error::other("cannot seal a spool record"))?;
        let len = u32::try_from(record.len()).expect("an event under 4 GiB");
        self.file.write_all_at(&len.to_le_bytes(), self.end)?;
        self.file.write_all_at(&record, self.end + 4)?;
        self.end += 4 + record.len() as u64;
        self.written += 1;
        Ok(())
    }

    /// The oldest event waiting, if any.
    pub fn pop(&mut self) -> io::Result<Option<WatchEvent>> {
        if self.len() == 0 {
            return Ok(None);
        }
        let mut len = [0; 4];
        self.file.read_exact_at(&mut len, self.start)?;
        let mut sealed = vec![0; u32::from_le_bytes(len) as usize];
        self.file.read_exact_at(&mut sealed, self.start + 4)?;
        let record = self
            .key
            .open_in_place(Self::nonce(self.read), Aad::empty(), &mut sealed)
            .map_err(|_| io::Error::other("a spool record does not open (altered on disk)"))?;
        let mut record = Record(record);
        let tag = record.array::<1>()?[0];
        let event = if tag == BOOKMARK {
            WatchEvent::Bookmark(u64::from_le_bytes(record.array()?))
        } else {
            let kind = match tag {
                0 => EventKind::Added,
                1 => EventKind::Modified,
                2 => EventKind::Deleted,
                other => return Err(io::Error::other(format!("spool record tag {other}"))),
            };
            let object = record.bytes()?.unwrap_or_default();
            let cells = record.bytes()?;
            WatchEvent::Object(kind, Item { object, cells })
        };
        self.start += 4 + sealed.len() as u64;
        self.read += 1;
        if self.len() == 0 {
            // Drained: later events reuse the file from its start.
            self.file.set_len(0)?;
            (self.start, self.end) = (0, 0);
        }
        Ok(Some(event))
    }
}

/// An opened record, read from its start.
struct Record<'a>(&'a [u8]);

impl Record<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(io::Error::other("a spool record is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn bytes(&mut self) -> io::Result<Option<Vec<u8>>> {
        let len = u32::from_le_bytes(self.array()?);
        if len == NO_CELLS {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?.to_vec()))
    }
}

fn put_bytes(record: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            let len = u32::try_from(b.len()).expect("an event under 4 GiB");
            record.extend_from_slice(&len.to_le_bytes());
            record.extend_from_slice(b);
        }
        None => record.extend_from_slice(&NO_CELLS.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: EventKind, json: &str, cells: Option<&str>) -> WatchEvent {
        WatchEvent::Object(
            kind,
            Item {
                object: json.as_bytes().to_vec(),
                cells: cells.map(|c| c.as_bytes().to_vec()),
            },
        )
    }

    fn describe(event: &WatchEvent) -> String {
        match event {
            WatchEvent::Object(kind, item) => format!(
                "{kind:?} {} {:?}",
                String::from_utf8_lossy(&item.object),
                item.cells.as_deref().map(String::from_utf8_lossy)
            ),
            WatchEvent::Bookmark(rv) => format!("bookmark {rv}"),
            WatchEvent::Error(status) => format!("error {}", status.code),
        }
    }

    #[test]
    fn events_come_back_in_order_interleaved_with_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path()).unwrap();
        let events = [
            object(EventKind::Added, r#"{"a":1}"#, Some(r#"["a"]"#)),
            WatchEvent::Bookmark(7),
            object(EventKind::Modified, r#"{"a":2}"#, None),
            object(EventKind::Deleted, "", Some("")),
        ];
        let mut out = Vec::new();
        spool.push(&events[0]).unwrap();
        spool.push(&events[1]).unwrap();
        out.push(spool.pop().unwrap().unwrap());
        spool.push(&events[2]).unwrap();
        out.push(spool.pop().unwrap().unwrap());
        out.push(spool.pop().unwrap().unwrap());
        assert!(spool.pop().unwrap().is_none(), "drained");
        // Reused from the start after draining.
        spool.push(&events[3]).unwrap();
        assert_eq!(spool.len(), 1);
        out.push(spool.pop().unwrap().unwrap());
        assert_eq!(
            out.iter().map(describe).collect::<Vec<_>>(),
            events.iter().map(describe).collect::<Vec<_>>()
        );
        assert_eq!(spool.len(), 0);
    }

    #[test]
    fn the_file_holds_no_event_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path()).unwrap();
        let secret = r#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#;
        spool
            .push(&object(EventKind::Added, secret, Some("[\"hunter\"]")))
            .unwrap();
        let mut on_disk = Vec::new();
        std::io::Read::read_to_end(&mut spool.file.try_clone().unwrap(), &mut on_disk).unwrap();
        assert!(on_disk.len() > secret.len(), "the record was written");
        for needle in ["aHVudGVyMg", "Secret", "hunter"] {
            assert!(
                !on_disk
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes()),
                "{needle} in the clear"
            );
        }
        // An altered record is refused, not misread.
        let last = on_disk.len() as u64 - 1;
        spool
            .file
            .write_all_at(&[on_disk[last as usize] ^ 1], last)
            .unwrap();
        assert!(spool.pop().is_err());
    }

    #[test]
    fn error_events_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path()).unwrap();
        let error = WatchEvent::Error(crate::upstream::StatusBody {
            code: 410,
            message: "gone".into(),
        });
        assert!(spool.push(&error).is_err());
        assert_eq!(spool.len(), 0);
    }
}

//! Watch events that arrive while a list is still being stored, held on disk until it is.
//!
//! A list of a large type under churn takes minutes (100,000 Pods under 500 changes/s on a
//! 2-core apiserver: three to ten), longer than upstream keeps history, so a watch opened from
//! the list's version after the list is refused `410` and the type is listed again, forever.
//! The reflector therefore opens the watch as soon as the list's first page gives its version
//! and keeps reading it meanwhile; the events wait here, in order, and are applied after the
//! list. A [`Spool`] is an unnamed file in the database's directory (private; gone when
//! dropped, or when the process dies): memory holds one event at a time, whatever the backlog.
//!
//! This module never interprets events: what it is given comes back, in the same order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use vai_store::{EventKind, Item};

use crate::upstream::WatchEvent;

/// Tag of a bookmark record (object records are tagged with their [`EventKind`]).
const BOOKMARK: u8 = EventKind::Bookmark as u8;
/// Length of absent table cells.
const NO_CELLS: u32 = u32::MAX;

/// A first-in first-out queue of watch events in a file. See the [module](self).
pub(crate) struct Spool {
    file: File,
    /// Where the next event is written.
    end: u64,
    /// Where the next event is read.
    start: u64,
    /// Events written and not read yet.
    len: u64,
}

impl Spool {
    /// An empty spool in `dir`.
    pub fn new(dir: &Path) -> io::Result<Spool> {
        Ok(Spool {
            file: tempfile::tempfile_in(dir)?,
            end: 0,
            start: 0,
            len: 0,
        })
    }

    /// Events waiting.
    pub fn len(&self) -> u64 {
        self.len
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
        self.file.write_all_at(&record, self.end)?;
        self.end += record.len() as u64;
        self.len += 1;
        Ok(())
    }

    /// The oldest event waiting, if any.
    pub fn pop(&mut self) -> io::Result<Option<WatchEvent>> {
        if self.len == 0 {
            return Ok(None);
        }
        let tag = self.read_array::<1>()?[0];
        let event = if tag == BOOKMARK {
            WatchEvent::Bookmark(u64::from_le_bytes(self.read_array()?))
        } else {
            let kind = match tag {
                0 => EventKind::Added,
                1 => EventKind::Modified,
                2 => EventKind::Deleted,
                other => return Err(io::Error::other(format!("spool record tag {other}"))),
            };
            let object = self.read_bytes()?.unwrap_or_default();
            let cells = self.read_bytes()?;
            WatchEvent::Object(kind, Item { object, cells })
        };
        self.len -= 1;
        if self.len == 0 {
            // Drained: later events reuse the file from its start.
            self.file.set_len(0)?;
            (self.start, self.end) = (0, 0);
        }
        Ok(Some(event))
    }

    fn read_array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut buf = [0; N];
        self.file.read_exact_at(&mut buf, self.start)?;
        self.start += N as u64;
        Ok(buf)
    }

    fn read_bytes(&mut self) -> io::Result<Option<Vec<u8>>> {
        let len = u32::from_le_bytes(self.read_array()?);
        if len == NO_CELLS {
            return Ok(None);
        }
        let mut buf = vec![0; len as usize];
        self.file.read_exact_at(&mut buf, self.start)?;
        self.start += u64::from(len);
        Ok(Some(buf))
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

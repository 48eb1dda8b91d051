//! What a store read's callback sends to an async consumer (a response body, a watch stream)
//! through a bounded channel, without ever waiting inside the read: an item the channel has no
//! room for is held, the read is asked to end ([`Pace::Yield`]), and [`Outbox::flush`], called
//! between the store's reads (see [`vai_store::Store::list_paced`]), waits for room.

use tokio::sync::mpsc;
use vai_store::Pace;

/// A channel's sending side that holds at most one item back.
pub(super) struct Outbox<T> {
    tx: mpsc::Sender<T>,
    held: Option<T>,
}

impl<T> Outbox<T> {
    pub(super) fn new(tx: mpsc::Sender<T>) -> Outbox<T> {
        Outbox { tx, held: None }
    }

    /// Sends `item` if there is room, else holds it and says to yield. An item held already
    /// is sent first, waiting (not expected: a sink that yielded gets no item before `flush`).
    pub(super) fn offer(&mut self, item: T) -> vai_store::Result<Pace> {
        self.flush()?;
        match self.tx.try_send(item) {
            Ok(()) => Ok(Pace::On),
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.held = Some(item);
                Ok(Pace::Yield)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(vai_store::Error::Closed),
        }
    }

    /// Sends the held item, waiting for room.
    pub(super) fn flush(&mut self) -> vai_store::Result<()> {
        match self.held.take() {
            Some(item) => self
                .tx
                .blocking_send(item)
                .map_err(|_| vai_store::Error::Closed),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_without_room_is_held_and_flushed_once_there_is_room() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut outbox = Outbox::new(tx);
        assert_eq!(outbox.offer(1).unwrap(), Pace::On);
        assert_eq!(outbox.offer(2).unwrap(), Pace::Yield);
        let reader = std::thread::spawn(move || {
            let first = rx.blocking_recv();
            let second = rx.blocking_recv();
            (first, second)
        });
        outbox.flush().unwrap();
        drop(outbox);
        assert_eq!(reader.join().unwrap(), (Some(1), Some(2)));
    }
}

//! The event stream: a ring buffer drained by a thread of its own as records come (never
//! only at fetch), handing each record to a sink; and the bounded recent-N table sink that
//! the `events` map kind serves. The thread stops and is joined when the stream is dropped.

use crate::module::ModuleError;
use libbpf_rs::MapCore;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest a record waits in the ring buffer when its program did not wake the stream.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

pub struct Stream {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    /// Starts draining `map` (a BPF ring buffer) into `sink`.
    pub fn start(
        map: &dyn MapCore,
        name: &str,
        mut sink: impl FnMut(&[u8]) + Send + 'static,
    ) -> Result<Stream, ModuleError> {
        let mut b = libbpf_rs::RingBufferBuilder::new();
        b.add(map, move |data: &[u8]| {
            sink(data);
            0
        })
        .map_err(ModuleError::bpf("ring buffer"))?;
        let rb = b.build().map_err(ModuleError::bpf("ring buffer"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-events"))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    // Errors are EINTR in practice; the timeout bounds the wait for `stop`.
                    let _ = rb.poll(DRAIN_INTERVAL);
                    // Programs may submit without waking us (BPF_RB_NO_WAKEUP, see
                    // ringbuf_wakeup_flags in maps.bpf.h): take what is there anyway.
                    let _ = rb.consume();
                }
            })
            .map_err(|e| ModuleError::Other(format!("cannot start the ring buffer thread: {e}")))?;
        Ok(Stream {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `cap` records, newest first, and how many came in all.
#[derive(Debug, Default)]
pub struct Recent {
    records: VecDeque<Vec<u8>>,
    cap: usize,
    pub total: u64,
}

impl Recent {
    pub fn new(cap: usize) -> Arc<Mutex<Recent>> {
        Arc::new(Mutex::new(Recent {
            records: VecDeque::with_capacity(cap),
            cap,
            total: 0,
        }))
    }

    pub fn push(&mut self, r: &[u8]) {
        // Once full, the oldest record's buffer takes the new one: no allocation per event.
        let mut buf = if self.records.len() == self.cap {
            self.records.pop_back().unwrap_or_default()
        } else {
            Vec::with_capacity(r.len())
        };
        buf.clear();
        buf.extend_from_slice(r);
        self.records.push_front(buf);
        self.total += 1;
    }

    pub fn newest_first(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.records.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest() {
        let r = Recent::new(2);
        let mut r = r.lock().unwrap();
        for i in 0u8..5 {
            r.push(&[i]);
        }
        let v: Vec<u8> = r.newest_first().map(|x| x[0]).collect();
        assert_eq!(v, vec![4, 3]);
        assert_eq!(r.total, 5);
    }
}

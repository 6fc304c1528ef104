//! The packet trace behind `xvsadm trace`: xvsd sets a filter in the director's
//! `xvs_trace_ctl`, and each packet it matches leaves one [`abi::TraceEvent`] in the ring
//! buffer `xvs_trace` — the service it matched, the connection it met or made, the scheduler's
//! pick with the runner-up's load, the template, the verdict and the reason. Neither map is
//! pinned: the next xvsd's program starts with the filter off (and xvsd turns it off when it
//! stops). With the filter off a packet pays one array lookup and a test (docs/benchmarks.md).

use aya::maps::{MapData, RingBuf};
use xvs_abi as abi;

use crate::director::Director;
use crate::error::{Context, Error};

/// The read end of the trace ring buffer; one reader at a time ([`Director::take_trace_reader`]).
pub struct TraceReader {
    ring: RingBuf<MapData>,
}

impl TraceReader {
    pub(crate) fn new(ring: RingBuf<MapData>) -> TraceReader {
        TraceReader { ring }
    }

    /// The records waiting, at most `max` (the rest stay for the next call).
    pub fn read(&mut self, max: usize) -> Vec<abi::TraceEvent> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(item) = self.ring.next() else { break };
            if item.len() >= std::mem::size_of::<abi::TraceEvent>() {
                // SAFETY: TraceEvent is plain old data (aya::Pod, size checked in xvs-abi)
                // and the item holds at least its size; read_unaligned needs no alignment.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<abi::TraceEvent>()) });
            }
        }
        out
    }
}

impl Director {
    /// Sets the trace filter (`on` set), or turns tracing off (`None`).
    pub fn set_trace(&mut self, filter: Option<abi::TraceFilter>) -> Result<(), Error> {
        let f = filter.map(|f| abi::TraceFilter { on: 1, ..f }).unwrap_or_default();
        self.maps.trace_ctl.set(0, f, 0).ctx(|| "write xvs_trace_ctl".into())
    }

    /// The ring buffer's reader, while no one else holds it.
    pub fn take_trace_reader(&mut self) -> Option<TraceReader> {
        self.trace_ring.take()
    }

    /// Gives the reader back (the next trace takes it).
    pub fn return_trace_reader(&mut self, r: TraceReader) {
        self.trace_ring = Some(r);
    }
}

//! The segment log's on-disk format: records, segment files, and reading them back.
//!
//! A segment is a preallocated file (zeros) named by its sequence number,
//! `00000000000000000042.seg`, holding records back to back from offset 0:
//!
//! ```text
//! record  = len: u32 LE | crc: u32 LE | payload (len bytes)
//! crc     = CRC-32 (IEEE) of  segment seq: u64 LE | len: u32 LE | payload
//! payload = kind: u8, then for an event (kind 1):
//!           id i64 | enqueued_at i64 | expires_at i64 | digest [16] | flags u8
//!           | signed_at i64 | received_at i64 | dedup_key | scheme | delivery_id?
//!           | event_type? | headers_json | body
//!           where a string or the body is len: u32 LE | bytes, and an absent optional
//!           one is the length u32::MAX;
//!           an end-of-segment record (kind 2) has no more bytes;
//!           a routed event (kind 3, an inbox with destinations) is an event followed by
//!           count u32 | (destination | lane?) × count: the deliveries made on receive.
//! ```
//!
//! The checksum covers the segment's sequence number, so a record left in a reused or
//! renamed file never passes for one of another segment. Reading stops at the first record
//! that is short, fails its checksum or does not decode: that is the end of what was
//! written (a torn write at the tail of the log, or the zeros after it). Garbage never
//! panics the reader. A segment that ends with the end-of-segment record was closed by a
//! rollover, so the log continues in the next segment; any other end is the end of the log.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::event::{NewEvent, RouteRecord};

/// Bytes before a record's payload.
pub(crate) const HEADER_LEN: usize = 8;
const KIND_EVENT: u8 = 1;
const KIND_END: u8 = 2;
const KIND_ROUTED: u8 = 3;
const ABSENT: u32 = u32::MAX;
const FLAG_TEST: u8 = 1;
const FLAG_SIGNED_AT: u8 = 2;
const SUFFIX: &str = ".seg";
/// A fully applied segment kept for reuse (renamed, not zeroed again).
const FREE_SUFFIX: &str = ".free";

/// One event as the log holds it: what the applier writes to SQLite.
#[derive(Debug, Clone)]
pub(crate) struct LogRecord {
    /// The event's id, assigned by the log's writer in append order.
    pub(crate) id: i64,
    /// When it was enqueued (its first due time).
    pub(crate) enqueued_at_ms: i64,
    /// When its dedup entry expires.
    pub(crate) expires_at_ms: i64,
    pub(crate) event: NewEvent,
}

/// The file name of segment `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// The name a fully applied segment `seq` is kept under for reuse.
pub(crate) fn free_name(seq: u64) -> String {
    format!("{seq:020}{FREE_SUFFIX}")
}

/// The files kept for reuse in `dir`.
pub(crate) fn list_free(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut free = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(FREE_SUFFIX))
        {
            free.push(entry.path());
        }
    }
    Ok(free)
}

/// The segments in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push((seq, entry.path()));
    }
    segments.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(segments)
}

/// Appends `record`'s header placeholder and payload to `buf`; [`seal`] writes the header
/// once the segment is known.
pub(crate) fn encode_event(record: &LogRecord, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    let e = &record.event;
    buf.push(if e.routes.is_some() {
        KIND_ROUTED
    } else {
        KIND_EVENT
    });
    buf.extend_from_slice(&record.id.to_le_bytes());
    buf.extend_from_slice(&record.enqueued_at_ms.to_le_bytes());
    buf.extend_from_slice(&record.expires_at_ms.to_le_bytes());
    buf.extend_from_slice(&e.dedup_digest);
    let mut flags = 0;
    if e.is_test {
        flags |= FLAG_TEST;
    }
    if e.signed_at_ms.is_some() {
        flags |= FLAG_SIGNED_AT;
    }
    buf.push(flags);
    buf.extend_from_slice(&e.signed_at_ms.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&e.received_at_ms.to_le_bytes());
    put(buf, Some(e.dedup_key.as_bytes()));
    put(buf, Some(e.scheme.as_bytes()));
    put(buf, e.delivery_id.as_deref().map(str::as_bytes));
    put(buf, e.event_type.as_deref().map(str::as_bytes));
    put(buf, Some(e.headers_json.as_bytes()));
    put(buf, Some(&e.body));
    if let Some(routes) = &e.routes {
        encode_routes(routes, buf);
    }
    set_len(buf, start);
}

/// The deliveries of a routed event, after its body.
fn encode_routes(routes: &[RouteRecord], buf: &mut Vec<u8>) {
    let count = u32::try_from(routes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&count.to_le_bytes());
    for route in routes.iter().take(count as usize) {
        put(buf, Some(route.destination.as_bytes()));
        put(buf, route.lane.as_deref().map(str::as_bytes));
    }
}

fn decode_routes(r: &mut Reader<'_>) -> Option<Vec<RouteRecord>> {
    let count = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
    let mut routes = Vec::new();
    for _ in 0..count {
        routes.push(RouteRecord {
            destination: r.string()??,
            lane: r.string()?,
        });
    }
    Some(routes)
}

/// Appends an end-of-segment record (header placeholder included) to `buf`.
pub(crate) fn encode_end(buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    buf.push(KIND_END);
    set_len(buf, start);
}

fn put(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        // Bodies and headers are far below 4 GiB (the gate's body limit); a longer one
        // would not be read back, so it is cut to the marker-free maximum instead.
        Some(bytes) => {
            let len = u32::try_from(bytes.len())
                .unwrap_or(ABSENT - 1)
                .min(ABSENT - 1);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
        }
        None => buf.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Writes the payload length of the record starting at `start`.
fn set_len(buf: &mut [u8], start: usize) {
    let payload = buf.len().saturating_sub(start).saturating_sub(HEADER_LEN);
    let len = u32::try_from(payload).unwrap_or(u32::MAX);
    if let Some(slot) = buf.get_mut(start..start.saturating_add(4)) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
}

/// Fills in the checksums of the records in `buf` (encoded back to back) for segment `seq`.
pub(crate) fn seal(buf: &mut [u8], seq: u64) {
    let mut at = 0usize;
    while let Some(len) = u32_at(buf, at) {
        let end = at.saturating_add(HEADER_LEN).saturating_add(len as usize);
        let Some(payload) = buf.get(at.saturating_add(HEADER_LEN)..end) else {
            return;
        };
        let crc = checksum(seq, len, payload);
        if let Some(slot) = buf.get_mut(at.saturating_add(4)..at.saturating_add(HEADER_LEN)) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        at = end;
    }
}

/// The little-endian `u32` at `at`, if the bytes are there.
fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn checksum(seq: u64, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// What one segment held.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) records: Vec<LogRecord>,
    /// The segment ended with an end-of-segment record: the log goes on in the next one.
    pub(crate) closed: bool,
    /// Bytes of valid records.
    pub(crate) valid_len: usize,
}

/// Reads the valid records of segment `seq` from its bytes, stopping at the first record
/// that is torn, fails its checksum or does not decode.
pub(crate) fn scan(seq: u64, data: &[u8]) -> Scanned {
    let mut scanned = Scanned::default();
    let mut at = 0usize;
    let mut last_id = i64::MIN;
    while let (Some(len), Some(crc)) = (u32_at(data, at), u32_at(data, at.saturating_add(4))) {
        if len == 0 {
            break;
        }
        let end = at.saturating_add(HEADER_LEN).saturating_add(len as usize);
        let Some(payload) = data.get(at.saturating_add(HEADER_LEN)..end) else {
            break;
        };
        if checksum(seq, len, payload) != crc {
            break;
        }
        match payload.first() {
            Some(&KIND_END) if payload.len() == 1 => {
                scanned.closed = true;
                scanned.valid_len = end;
                break;
            }
            Some(&kind @ (KIND_EVENT | KIND_ROUTED)) => {
                match decode_event(payload.get(1..).unwrap_or(&[]), kind == KIND_ROUTED) {
                    // Ids only grow: a smaller one is not part of this log.
                    Some(record) if record.id > last_id => {
                        last_id = record.id;
                        scanned.records.push(record);
                        scanned.valid_len = end;
                    }
                    _ => break,
                }
            }
            _ => break,
        }
        at = end;
    }
    scanned
}

/// A cursor over a payload; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if len == ABSENT {
            return Some(None);
        }
        Some(Some(self.take(len as usize)?))
    }

    fn string(&mut self) -> Option<Option<String>> {
        match self.bytes()? {
            Some(bytes) => Some(Some(String::from_utf8(bytes.to_vec()).ok()?)),
            None => Some(None),
        }
    }
}

fn decode_event(payload: &[u8], routed: bool) -> Option<LogRecord> {
    let mut r = Reader(payload);
    let id = r.i64()?;
    let enqueued_at_ms = r.i64()?;
    let expires_at_ms = r.i64()?;
    let dedup_digest: [u8; 16] = r.take(16)?.try_into().ok()?;
    let flags = r.u8()?;
    let signed_at = r.i64()?;
    let received_at_ms = r.i64()?;
    let dedup_key = r.string()??;
    let scheme = r.string()??;
    let delivery_id = r.string()?;
    let event_type = r.string()?;
    let headers_json = r.string()??;
    let body = Bytes::copy_from_slice(r.bytes()??);
    let routes = if routed {
        Some(decode_routes(&mut r)?)
    } else {
        None
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(LogRecord {
        id,
        enqueued_at_ms,
        expires_at_ms,
        event: NewEvent {
            dedup_key,
            dedup_digest,
            scheme,
            delivery_id,
            event_type,
            signed_at_ms: (flags & FLAG_SIGNED_AT != 0).then_some(signed_at),
            received_at_ms,
            body,
            headers_json,
            is_test: flags & FLAG_TEST != 0,
            routes,
        },
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;
    use crate::digest::key_digest;

    pub(crate) fn record(id: i64, body: &str) -> LogRecord {
        let key = format!("test:id:msg_{id}");
        LogRecord {
            id,
            enqueued_at_ms: 1_700_000_000_000 + id,
            expires_at_ms: 1_700_000_100_000,
            event: NewEvent {
                dedup_digest: key_digest(&key),
                dedup_key: key,
                scheme: "standard-webhooks".to_owned(),
                delivery_id: Some(format!("msg_{id}")),
                event_type: None,
                signed_at_ms: Some(1_699_999_999_000),
                received_at_ms: 1_700_000_000_000,
                body: Bytes::from(body.to_owned()),
                headers_json: "[[\"webhook-id\",\"x\"]]".to_owned(),
                is_test: id % 2 == 0,
                routes: None,
            },
        }
    }

    fn encoded(seq: u64, records: &[LogRecord], end: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            encode_event(r, &mut buf);
        }
        if end {
            encode_end(&mut buf);
        }
        seal(&mut buf, seq);
        buf
    }

    #[test]
    fn records_round_trip_and_the_zeros_after_them_end_the_segment() {
        let records = [record(1, "{}"), record(2, "{\"a\":1}"), record(3, "")];
        let mut data = encoded(7, &records, false);
        let written = data.len();
        data.resize(written + 4096, 0);
        let scanned = scan(7, &data);
        assert_eq!(scanned.records.len(), 3);
        assert!(!scanned.closed);
        assert_eq!(scanned.valid_len, written);
        let back = &scanned.records[1];
        assert_eq!(back.id, 2);
        assert_eq!(back.event.body, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(back.event.delivery_id.as_deref(), Some("msg_2"));
        assert_eq!(back.event.event_type, None);
        assert_eq!(back.event.signed_at_ms, Some(1_699_999_999_000));
        assert_eq!(back.event.dedup_digest, records[1].event.dedup_digest);
        assert!(back.event.is_test);
        assert!(!scanned.records[0].event.is_test);
    }

    #[test]
    fn routed_records_keep_their_deliveries() {
        let mut routed = record(2, "{}");
        routed.event.routes = Some(vec![
            RouteRecord {
                destination: "billing".to_owned(),
                lane: Some("cus_1".to_owned()),
            },
            RouteRecord {
                destination: "audit".to_owned(),
                lane: None,
            },
        ]);
        let mut filtered = record(3, "{}");
        filtered.event.routes = Some(Vec::new());
        let records = [record(1, "{}"), routed.clone(), filtered];
        let scanned = scan(7, &encoded(7, &records, false));
        assert_eq!(scanned.records.len(), 3);
        assert_eq!(scanned.records[0].event.routes, None);
        assert_eq!(scanned.records[1].event.routes, routed.event.routes);
        assert_eq!(scanned.records[2].event.routes, Some(Vec::new()));
    }

    #[test]
    fn a_torn_tail_ends_the_log_at_the_last_whole_record() {
        let data = encoded(1, &[record(1, "one"), record(2, "two")], false);
        let first_len = scan(1, &data).records.len();
        assert_eq!(first_len, 2);
        // Every prefix that cuts the second record keeps exactly the first.
        let one = encoded(1, &[record(1, "one")], false).len();
        for cut in one..data.len() {
            let scanned = scan(1, &data[..cut]);
            assert_eq!(scanned.records.len(), 1, "cut at {cut}");
            assert_eq!(scanned.valid_len, one);
        }
    }

    #[test]
    fn a_flipped_bit_or_another_segments_record_fails_the_checksum() {
        let data = encoded(
            1,
            &[record(1, "one"), record(2, "two"), record(3, "x")],
            true,
        );
        let one = encoded(1, &[record(1, "one")], false).len();
        for bit in [0usize, 7, 13] {
            let mut bad = data.clone();
            bad[one + HEADER_LEN + 20 + bit / 8] ^= 1 << (bit % 8);
            let scanned = scan(1, &bad);
            assert_eq!(scanned.records.len(), 1, "bit {bit}");
            assert!(!scanned.closed);
        }
        // The same bytes read as segment 2 (a recycled file) hold nothing.
        assert!(scan(2, &data).records.is_empty());
        let whole = scan(1, &data);
        assert_eq!(whole.records.len(), 3);
        assert!(whole.closed);
    }

    #[test]
    fn garbage_never_panics_and_yields_nothing() {
        let mut state = 0x1234_5678_u64;
        for len in [0usize, 1, 7, 8, 9, 64, 4096] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            assert!(scan(1, &data).records.is_empty());
        }
        // A header claiming more bytes than there are.
        let mut huge = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        huge.extend_from_slice(&[1; 32]);
        assert!(scan(1, &huge).records.is_empty());
        // A valid checksum over a payload that does not decode.
        let mut bogus = Vec::new();
        bogus.extend_from_slice(&[0; HEADER_LEN]);
        bogus.extend_from_slice(&[KIND_EVENT, 1, 2, 3]);
        set_len(&mut bogus, 0);
        seal(&mut bogus, 1);
        assert!(scan(1, &bogus).records.is_empty());
    }

    #[test]
    fn segment_names_sort_by_sequence() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [10_u64, 2, 1] {
            fs::write(dir.path().join(file_name(seq)), b"").unwrap();
        }
        fs::write(dir.path().join("LOCK"), b"").unwrap();
        let seqs: Vec<u64> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, [1, 2, 10]);
    }
}

//! The little-endian pieces the stream-state object is made of (`state/stream/gen-<n>.bin`):
//! 64-bit words and length-prefixed names. Hand-written: the format is three fields deep and a
//! serialisation crate would add a dependency for it.

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    put_u64(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

/// The next word; `None` when the bytes are cut short.
pub(crate) fn u64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

/// The next name; `None` when cut short or not UTF-8.
pub(crate) fn name(bytes: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(u64(bytes)?).ok()?;
    if bytes.len() < len {
        return None;
    }
    let (name, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(std::str::from_utf8(name).ok()?.to_string())
}

//! The embedded stream log: per shard, append-only segment files in `<dir>/<shard>/`, named by
//! their first sequence number. A record is framed as `seq u64 | arrival_ms i64 | len u32 |
//! bytes` (little endian). A torn tail (a crash mid-append) is cut off when the shard is opened,
//! so sequence numbers stay dense. Segments roll over at `segment_bytes`; whole segments older
//! than the retention are deleted, as Kinesis expires records.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{shard_names, Record, StreamLog};
use crate::error::{Error, IoContext, Result};

const HEADER: usize = 8 + 8 + 4;
/// Largest record accepted (Kinesis' limit is 1 MiB too).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

#[derive(Debug)]
struct ShardState {
    dir: PathBuf,
    next_seq: u64,
    /// The open segment and its size.
    current: Option<(File, u64)>,
}

/// (segment, next sequence number, its byte offset): where a shard's last read stopped.
type Cursor = (PathBuf, u64, u64);

#[derive(Debug, Clone)]
pub struct LocalLog {
    dir: PathBuf,
    names: Vec<String>,
    segment_bytes: u64,
    retention: Duration,
    fsync: bool,
    /// An observer's view: creates nothing, cuts nothing, refuses appends.
    read_only: bool,
    shards: Arc<Mutex<HashMap<String, ShardState>>>,
    /// Per shard: where the last read stopped.
    cursors: Arc<Mutex<HashMap<String, Cursor>>>,
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in entries {
        let e = e.at(dir)?;
        let name = e.file_name();
        if let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((first, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Parse the records of one segment; stops at a torn tail and returns its valid length.
fn parse_segment(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let num = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at + i..at + i + 8]);
            b
        };
        let seq = u64::from_le_bytes(num(0));
        let arrival_ms = i64::from_le_bytes(num(8));
        let mut l = [0u8; 4];
        l.copy_from_slice(&buf[at + 16..at + 20]);
        let len = u32::from_le_bytes(l) as usize;
        if at + HEADER + len > buf.len() {
            break;
        }
        out.push(Record {
            seq,
            arrival_ms,
            data: Bytes::copy_from_slice(&buf[at + HEADER..at + HEADER + len]),
        });
        at += HEADER + len;
    }
    (out, at)
}

impl LocalLog {
    /// The shard a partition key maps to.
    pub fn shard_for(&self, partition_key: &str) -> String {
        let h = crate::dedup::id_hash(partition_key.as_bytes());
        self.names[(h % self.names.len().max(1) as u64) as usize].clone()
    }

    pub fn open(
        dir: impl Into<PathBuf>,
        shards: u32,
        segment_bytes: u64,
        retention: Duration,
        fsync: bool,
    ) -> Result<LocalLog> {
        let dir = dir.into();
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(LocalLog {
            dir,
            names: shard_names(shards),
            segment_bytes: segment_bytes.max(4096),
            retention,
            fsync,
            read_only: false,
            shards: Arc::default(),
            cursors: Arc::default(),
        })
    }

    /// The log as a reader sees it while a writer may be appending: no directory is created,
    /// no torn tail cut (it may be the writer's append in flight), and `put` is refused.
    pub fn open_read_only(dir: impl Into<PathBuf>, shards: u32) -> LocalLog {
        LocalLog {
            dir: dir.into(),
            names: shard_names(shards),
            segment_bytes: 4096,
            retention: Duration::MAX,
            fsync: false,
            read_only: true,
            shards: Arc::default(),
            cursors: Arc::default(),
        }
    }

    /// Open a shard: find its next sequence number, cutting a torn tail.
    fn state(&self, shard: &str) -> Result<ShardState> {
        let dir = self.dir.join(shard);
        if !self.read_only {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let segs = segments(&dir)?;
        let mut next_seq = 1;
        if let Some((first, path)) = segs.last() {
            let buf = fs::read(path).at(path)?;
            let (records, valid) = parse_segment(&buf);
            if valid < buf.len() && !self.read_only {
                tracing::warn!(path = %path.display(), cut = buf.len() - valid, "torn tail cut from stream segment");
                let f = OpenOptions::new().write(true).open(path).at(path)?;
                f.set_len(valid as u64).at(path)?;
            }
            next_seq = records.last().map_or(*first, |r| r.seq + 1);
        }
        Ok(ShardState {
            dir,
            next_seq,
            current: None,
        })
    }

    fn put_blocking(&self, records: Vec<(String, Bytes)>) -> Result<()> {
        if self.read_only {
            return Err(Error::Other("the stream log is open read-only".into()));
        }
        let now = crate::clock::now_ms();
        let mut by_shard: HashMap<String, Vec<Bytes>> = HashMap::new();
        for (key, data) in records {
            if data.len() > MAX_RECORD_BYTES {
                return Err(Error::Invalid(format!(
                    "record of {} bytes is over the {MAX_RECORD_BYTES} byte limit",
                    data.len()
                )));
            }
            by_shard.entry(self.shard_for(&key)).or_default().push(data);
        }
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        for (shard, datas) in by_shard {
            if !shards.contains_key(&shard) {
                let st = self.state(&shard)?;
                shards.insert(shard.clone(), st);
            }
            let Some(st) = shards.get_mut(&shard) else {
                continue;
            };
            let mut buf = Vec::with_capacity(datas.iter().map(|d| d.len() + HEADER).sum());
            for d in &datas {
                buf.extend_from_slice(&st.next_seq.to_le_bytes());
                buf.extend_from_slice(&now.to_le_bytes());
                buf.extend_from_slice(&(d.len() as u32).to_le_bytes());
                buf.extend_from_slice(d);
                st.next_seq += 1;
            }
            let roll = st
                .current
                .as_ref()
                .is_none_or(|(_, size)| *size >= self.segment_bytes);
            if roll {
                let first = st.next_seq - datas.len() as u64;
                let path = st.dir.join(format!("{first:020}.log"));
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .at(&path)?;
                let size = f.metadata().at(&path)?.len();
                st.current = Some((f, size));
                self.expire(&st.dir)?;
            }
            if let Some((f, size)) = st.current.as_mut() {
                f.write_all(&buf).at(&st.dir)?;
                if self.fsync {
                    f.sync_data().at(&st.dir)?;
                }
                *size += buf.len() as u64;
            }
        }
        Ok(())
    }

    /// Delete whole segments older than the retention, never the newest.
    fn expire(&self, dir: &Path) -> Result<()> {
        let segs = segments(dir)?;
        let cutoff = SystemTime::now() - self.retention;
        for (_, path) in segs.iter().take(segs.len().saturating_sub(1)) {
            let old = fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if old {
                tracing::info!(path = %path.display(), "stream segment expired (retention)");
                fs::remove_file(path).at(path)?;
            }
        }
        Ok(())
    }

    fn read_blocking(&self, shard: &str, after: Option<u64>, max: usize) -> Result<Vec<Record>> {
        use std::io::{BufReader, Seek, SeekFrom};
        let dir = self.dir.join(shard);
        let segs = segments(&dir)?;
        let from = after.map_or(0, |a| a + 1);
        // The last segment starting at or before `from` holds it; earlier ones cannot.
        let start = segs
            .iter()
            .rposition(|(first, _)| *first <= from)
            .unwrap_or(0);
        // A consumer reads on from where it stopped: resume at the remembered offset instead of
        // scanning the segment from its start (which made draining quadratic in segment size).
        let cursor = {
            let cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
            cursors.get(shard).cloned()
        };
        let mut out = Vec::new();
        let mut last = None;
        for (_, path) in &segs[start.min(segs.len())..] {
            let file = File::open(path).at(path)?;
            let mut offset = 0u64;
            let mut reader = BufReader::with_capacity(1 << 20, file);
            if let Some((cpath, next_seq, coff)) = &cursor {
                if cpath == path && *next_seq == from {
                    reader.seek(SeekFrom::Start(*coff)).at(path)?;
                    offset = *coff;
                }
            }
            let mut header = [0u8; HEADER];
            loop {
                // A short read is the end of the segment (or a torn tail, cut on next open).
                if reader.read_exact(&mut header).is_err() {
                    break;
                }
                let mut n8 = [0u8; 8];
                n8.copy_from_slice(&header[0..8]);
                let seq = u64::from_le_bytes(n8);
                n8.copy_from_slice(&header[8..16]);
                let arrival_ms = i64::from_le_bytes(n8);
                let mut n4 = [0u8; 4];
                n4.copy_from_slice(&header[16..20]);
                let len = u32::from_le_bytes(n4) as usize;
                if seq < from {
                    if reader.seek_relative(len as i64).is_err() {
                        break;
                    }
                    offset += (HEADER + len) as u64;
                    continue;
                }
                let mut data = vec![0u8; len];
                if reader.read_exact(&mut data).is_err() {
                    break;
                }
                offset += (HEADER + len) as u64;
                out.push(Record {
                    seq,
                    arrival_ms,
                    data: Bytes::from(data),
                });
                last = Some((path.clone(), seq + 1, offset));
                if out.len() >= max {
                    break;
                }
            }
            if out.len() >= max {
                break;
            }
        }
        // A one-record peek (the status's lag probe) must not move the consumer's cursor.
        if let Some(pos) = last.filter(|_| max > 1) {
            let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
            cursors.insert(shard.to_string(), pos);
        }
        Ok(out)
    }
}

impl StreamLog for LocalLog {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn shards(&self) -> Vec<String> {
        self.names.clone()
    }

    fn put(&self, records: Vec<(String, Bytes)>) -> BoxFuture<'_, Result<()>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.put_blocking(records))
                .await
                .map_err(|e| Error::Other(format!("stream task failed: {e}")))?
        })
    }

    fn read<'a>(
        &'a self,
        shard: &'a str,
        after: Option<u64>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        let this = self.clone();
        let shard = shard.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.read_blocking(&shard, after, max))
                .await
                .map_err(|e| Error::Other(format!("stream task failed: {e}")))?
        })
    }

    fn latest_seq<'a>(&'a self, shard: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
            if !shards.contains_key(shard) {
                let st = self.state(shard)?;
                shards.insert(shard.to_string(), st);
            }
            Ok(shards
                .get(shard)
                .and_then(|s| s.next_seq.checked_sub(1))
                .filter(|s| *s > 0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path) -> LocalLog {
        LocalLog::open(dir, 2, 4096, Duration::from_secs(3600), false).unwrap()
    }

    #[tokio::test]
    async fn appends_read_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let l = log(dir.path());
        let recs: Vec<(String, Bytes)> = (0..500)
            .map(|i| {
                (
                    "k".to_string(),
                    Bytes::from(format!("record {i:05} {}", "x".repeat(40))),
                )
            })
            .collect();
        for chunk in recs.chunks(50) {
            l.put(chunk.to_vec()).await.unwrap();
        }
        let shard = l.shard_for("k");
        assert!(
            segments(&dir.path().join(&shard)).unwrap().len() > 1,
            "rolled over"
        );
        let all = l.read(&shard, None, 10_000).await.unwrap();
        assert_eq!(all.len(), 500);
        assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert_eq!(all[0].seq, 1);
        let tail = l.read(&shard, Some(480), 100).await.unwrap();
        assert_eq!(tail.len(), 20);
        assert_eq!(&tail[0].data[..13], b"record 00480 ");

        // A torn tail is cut on reopen and numbering continues densely.
        let (_, last) = segments(&dir.path().join(&shard)).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&[1, 2, 3, 4, 5]).unwrap();
        let l2 = log(dir.path());
        assert_eq!(l2.latest_seq(&shard).await.unwrap(), Some(500));
        l2.put(vec![("k".into(), Bytes::from_static(b"after"))])
            .await
            .unwrap();
        let after = l2.read(&shard, Some(500), 10).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].seq, 501);
    }

    #[tokio::test]
    async fn an_oversized_record_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let l = log(dir.path());
        let big = Bytes::from(vec![b'x'; MAX_RECORD_BYTES + 1]);
        let err = l.put(vec![("k".into(), big)]).await.unwrap_err();
        assert!(err.to_string().contains("byte limit"), "{err}");
        assert_eq!(l.latest_seq(&l.shard_for("k")).await.unwrap(), None);
    }
}

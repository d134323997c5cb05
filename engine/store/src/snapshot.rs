//! Snapshots: the whole store in one file, so that start-up replays only the log written since
//! and older log segments can be deleted. Written beside the running store without stopping
//! writes: each lead is copied with the sequence number of its last change, and replay skips
//! records a lead already reflects.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use compact_str::CompactString;

use super::agents::Agent;
use super::audit::AuditEntry;
use super::dial::{AtClaim, Dial};
use super::frame::{self, FrameReader};
use super::history::ScoreChange;
use super::lead::{Lead, LeadId};
use super::wal::sync_dir;

/// 2: calls carry their routing segment and arm; agents.
const FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
enum Item {
    Header {
        format: u32,
        segment: u64,
        created_at_ms: i64,
    },
    Lead {
        id: LeadId,
        lead: Lead,
    },
    Suppressed(Vec<[u8; 32]>),
    /// Attribute names and event kinds in symbol order. Written after the leads: names are
    /// only ever added, so the table then covers every symbol the copied leads use.
    Names {
        attributes: Vec<String>,
        event_kinds: Vec<String>,
    },
    Footer {
        leads: u64,
    },
    /// The configuration last changed at run time: its version and runtime sections (TOML).
    /// Added after the first format, so it comes last here and older files simply lack it.
    Config {
        version: u64,
        toml: String,
    },
    /// A lead's dialer state. Added later, like `DoNotCall`.
    Dial {
        id: LeadId,
        dial: Dial,
    },
    /// Numbers on the internal do-not-call list.
    DoNotCall(Vec<CompactString>),
    /// The last sequence number logged before the snapshot's segment: numbering goes on from
    /// there even if nothing is logged after it.
    Position {
        last_lsn: u64,
    },
    Agents(Vec<Agent>),
    /// A lead's score changes. Added later; older files lack them.
    History {
        id: LeadId,
        changes: Vec<ScoreChange>,
    },
    /// A lead's dialer state with what scoring said at its claims (`Dial::at_claim`, which
    /// `Dial` items lack). Added later.
    ScoredDial {
        id: LeadId,
        dial: Dial,
        at_claim: Vec<(u64, AtClaim)>,
    },
    /// The audit trail, oldest first. Added later.
    Audit(Vec<AuditEntry>),
}

pub fn path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("snapshot-{segment:020}.snap"))
}

/// Segment numbers of the complete snapshots in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("snapshot-").and_then(|s| s.strip_suffix(".snap"))
            && let Ok(n) = n.parse()
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The contents of a snapshot file.
pub struct Contents {
    pub segment: u64,
    pub created_at_ms: i64,
    pub leads: u64,
    pub suppressed: Vec<[u8; 32]>,
    pub attribute_names: Vec<String>,
    pub event_kinds: Vec<String>,
    pub config: Option<(u64, String)>,
    pub do_not_call: Vec<CompactString>,
    pub agents: Vec<Agent>,
    pub audit: Vec<AuditEntry>,
    /// The last sequence number logged before the snapshot's segment (0 in files written
    /// before it was recorded).
    pub position: u64,
    /// The highest sequence number any lead or dialer state in the file carries; above
    /// `position` when writes went on while the snapshot was written.
    pub max_item_lsn: u64,
}

/// Writes a snapshot through a temporary file, renamed into place only when complete and
/// synced; returns its path and size.
pub struct Writer {
    tmp: PathBuf,
    out: BufWriter<File>,
    items: u64,
    leads: u64,
    buf: Vec<u8>,
}

impl Writer {
    pub fn create(dir: &Path, segment: u64, created_at_ms: i64) -> io::Result<Self> {
        let tmp = dir.join(format!("snapshot-{segment:020}.tmp"));
        let out = BufWriter::with_capacity(
            1 << 20,
            super::private::options().write(true).create(true).truncate(true).open(&tmp)?,
        );
        let mut writer = Self { tmp, out, items: 0, leads: 0, buf: Vec::new() };
        writer.item(&Item::Header { format: FORMAT, segment, created_at_ms })?;
        Ok(writer)
    }

    fn item(&mut self, item: &Item) -> io::Result<()> {
        let payload = postcard::to_stdvec(item).map_err(io::Error::other)?;
        self.items += 1;
        self.buf.clear();
        frame::encode(self.items, &payload, &mut self.buf);
        self.out.write_all(&self.buf)
    }

    pub fn lead(&mut self, id: LeadId, lead: Lead) -> io::Result<()> {
        self.leads += 1;
        self.item(&Item::Lead { id, lead })
    }

    pub fn dial(&mut self, id: LeadId, mut dial: Dial) -> io::Result<()> {
        match std::mem::take(&mut dial.at_claim) {
            at_claim if at_claim.is_empty() => self.item(&Item::Dial { id, dial }),
            at_claim => self.item(&Item::ScoredDial { id, dial, at_claim }),
        }
    }

    pub fn audit(&mut self, entries: Vec<AuditEntry>) -> io::Result<()> {
        self.item(&Item::Audit(entries))
    }

    pub fn history(&mut self, id: LeadId, changes: Vec<ScoreChange>) -> io::Result<()> {
        self.item(&Item::History { id, changes })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        mut self,
        dir: &Path,
        segment: u64,
        suppressed: Vec<[u8; 32]>,
        attribute_names: Vec<String>,
        event_kinds: Vec<String>,
        config: Option<(u64, String)>,
        do_not_call: Vec<CompactString>,
        agents: Vec<Agent>,
        last_lsn: u64,
    ) -> io::Result<(PathBuf, u64, u64)> {
        self.item(&Item::Position { last_lsn })?;
        for chunk in suppressed.chunks(4096) {
            self.item(&Item::Suppressed(chunk.to_vec()))?;
        }
        for chunk in do_not_call.chunks(4096) {
            self.item(&Item::DoNotCall(chunk.to_vec()))?;
        }
        for chunk in agents.chunks(1024) {
            self.item(&Item::Agents(chunk.to_vec()))?;
        }
        self.item(&Item::Names { attributes: attribute_names, event_kinds })?;
        if let Some((version, toml)) = config {
            self.item(&Item::Config { version, toml })?;
        }
        self.item(&Item::Footer { leads: self.leads })?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        let target = path(dir, segment);
        fs::rename(&self.tmp, &target)?;
        sync_dir(dir)?;
        Ok((target, self.leads, bytes))
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: damaged at byte {offset}: {cause}")]
    Damaged { path: PathBuf, offset: u64, cause: String },
}

/// Reads a snapshot, handing each lead, each lead's dialer state and its score history over
/// as it is decoded.
pub fn read(
    path: &Path,
    mut on_lead: impl FnMut(LeadId, Lead),
    mut on_dial: impl FnMut(LeadId, Dial),
    mut on_history: impl FnMut(LeadId, Vec<ScoreChange>),
) -> Result<Contents, ReadError> {
    let damaged = |offset, cause: String| ReadError::Damaged { path: path.to_owned(), offset, cause };
    let file = File::open(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    let mut frames = FrameReader::new(BufReader::with_capacity(1 << 20, file), 0);
    let mut contents = Contents {
        segment: 0,
        created_at_ms: 0,
        leads: 0,
        suppressed: Vec::new(),
        attribute_names: Vec::new(),
        event_kinds: Vec::new(),
        config: None,
        do_not_call: Vec::new(),
        agents: Vec::new(),
        audit: Vec::new(),
        position: 0,
        max_item_lsn: 0,
    };
    let mut expected = 1;
    loop {
        let offset = frames.offset();
        let frame = match frames.next_frame() {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err(damaged(offset, "ends without a footer".into())),
            Ok(Err(bad)) => return Err(damaged(offset, bad.to_string())),
            Err(source) => {
                return Err(ReadError::Io { path: path.to_owned(), source });
            }
        };
        if frame.lsn != expected {
            return Err(damaged(offset, format!("item {} where {expected} was expected", frame.lsn)));
        }
        expected += 1;
        let item: Item = postcard::from_bytes(&frame.payload).map_err(|e| damaged(offset, e.to_string()))?;
        match item {
            Item::Header { format, segment, created_at_ms } if expected == 2 => {
                if format != FORMAT {
                    return Err(damaged(offset, format!("format {format}, this build reads {FORMAT}")));
                }
                contents.segment = segment;
                contents.created_at_ms = created_at_ms;
            }
            _ if expected == 2 => return Err(damaged(offset, "missing header".into())),
            Item::Header { .. } => return Err(damaged(offset, "second header".into())),
            Item::Lead { id, mut lead } => {
                lead.attributes_lsn = lead.lsn;
                contents.leads += 1;
                contents.max_item_lsn = contents.max_item_lsn.max(lead.lsn);
                on_lead(id, lead);
            }
            Item::Suppressed(keys) => contents.suppressed.extend(keys),
            Item::Names { attributes, event_kinds } => {
                contents.attribute_names = attributes;
                contents.event_kinds = event_kinds;
            }
            Item::Config { version, toml } => contents.config = Some((version, toml)),
            Item::Dial { id, dial } => {
                contents.max_item_lsn = contents.max_item_lsn.max(dial.lsn);
                on_dial(id, dial);
            }
            Item::ScoredDial { id, mut dial, at_claim } => {
                contents.max_item_lsn = contents.max_item_lsn.max(dial.lsn);
                dial.at_claim = at_claim;
                on_dial(id, dial);
            }
            Item::Position { last_lsn } => contents.position = last_lsn,
            Item::DoNotCall(phones) => contents.do_not_call.extend(phones),
            Item::Agents(agents) => contents.agents.extend(agents),
            Item::Audit(entries) => contents.audit.extend(entries),
            Item::History { id, changes } => on_history(id, changes),
            Item::Footer { leads } => {
                if leads != contents.leads {
                    return Err(damaged(offset, format!("footer counts {leads} leads, found {}", contents.leads)));
                }
                return Ok(contents);
            }
        }
    }
}

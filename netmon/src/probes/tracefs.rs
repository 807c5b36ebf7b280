//! Field offsets of classic tracepoints, from their `format` files in tracefs.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn is_mounted() -> bool {
    ROOTS
        .iter()
        .any(|root| Path::new(root).join("events").is_dir())
}

/// Mounts tracefs at `/sys/kernel/tracing` when no tracefs is mounted, as perf and bpftrace
/// do: classic tracepoints need its format files and ids. The mount is left in place for other
/// tools. Returns whether tracefs is available afterwards.
pub fn ensure_mounted() -> bool {
    if is_mounted() {
        return true;
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with static, NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        tracing::debug!("cannot mount tracefs: {}", std::io::Error::last_os_error());
        return false;
    }
    tracing::info!("mounted tracefs at /sys/kernel/tracing for the classic tracepoints");
    true
}

/// Directory of a tracepoint's files, if tracefs is mounted and the tracepoint exists.
pub fn event_dir(category: &str, name: &str) -> Option<PathBuf> {
    ROOTS
        .iter()
        .map(|root| Path::new(root).join("events").join(category).join(name))
        .find(|dir| dir.join("format").exists())
}

/// Parsed `format` file: field name -> byte offset in the tracepoint record.
#[derive(Debug, Default)]
pub struct TracepointFormat {
    fields: Vec<(String, u32)>,
}

impl TracepointFormat {
    pub fn read(category: &str, name: &str) -> anyhow::Result<Self> {
        let dir = event_dir(category, name)
            .with_context(|| format!("tracepoint {category}:{name} not found in tracefs"))?;
        let text = std::fs::read_to_string(dir.join("format"))
            .with_context(|| format!("reading format of {category}:{name}"))?;
        Self::parse(&text)
    }

    /// Parses lines such as `field:void * skbaddr; offset:8; size:8; signed:0;` (tab-separated).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut parts = rest.split(';').map(str::trim);
            let declaration = parts.next().unwrap_or_default();
            let Some(name) = declaration
                .split_whitespace()
                .last()
                .map(|name| name.split('[').next().unwrap_or(name))
            else {
                continue;
            };
            let offset = parts
                .find_map(|part| part.strip_prefix("offset:"))
                .with_context(|| format!("no offset in format line {line:?}"))?
                .parse()
                .with_context(|| format!("bad offset in format line {line:?}"))?;
            fields.push((name.to_string(), offset));
        }
        if fields.is_empty() {
            bail!("no fields in tracepoint format");
        }
        Ok(Self { fields })
    }

    pub fn offset(&self, field: &str) -> Option<u32> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, offset)| *offset)
    }

    pub fn require(&self, field: &str) -> anyhow::Result<u32> {
        self.offset(field)
            .with_context(|| format!("tracepoint has no field {field}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE_SKB: &str = "name: kfree_skb
ID: 1651
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:void * skbaddr;	offset:8;	size:8;	signed:0;
	field:void * location;	offset:16;	size:8;	signed:0;
	field:void * rx_sk;	offset:24;	size:8;	signed:0;
	field:unsigned short protocol;	offset:32;	size:2;	signed:0;
	field:enum skb_drop_reason reason;	offset:36;	size:4;	signed:0;
	field:__u8 saddr[4];	offset:40;	size:4;	signed:0;

print fmt: \"skbaddr=%p\"
";

    #[test]
    fn parses_fields_and_offsets() {
        let format = TracepointFormat::parse(KFREE_SKB).unwrap();
        assert_eq!(format.offset("skbaddr"), Some(8));
        assert_eq!(format.offset("protocol"), Some(32));
        assert_eq!(format.offset("reason"), Some(36));
        assert_eq!(format.offset("saddr"), Some(40));
        assert_eq!(format.offset("common_pid"), Some(4));
        assert!(format.require("nothing").is_err());
    }

    #[test]
    fn rejects_text_without_fields() {
        assert!(TracepointFormat::parse("name: x\nformat:\n").is_err());
        assert!(TracepointFormat::parse("field:int x;\toffset:abc;").is_err());
    }
}

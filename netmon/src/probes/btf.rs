//! A reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): just enough to find struct member
//! offsets and enum values, so that nothing about kernel layout is compiled into netmon.
use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, bail, ensure};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// Prefix of the typedef the kernel's BTF has for each tracepoint.
const TRACEPOINT_TYPEDEF: &str = "btf_trace_";

/// A member of a struct or union.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    /// Offset from the start of the enclosing type, in bits.
    pub bit_offset: u32,
    /// Width in bits when the member is a bit field.
    pub bitfield_size: Option<u32>,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        members: Vec<Member>,
    },
    Enum {
        values: Vec<(String, i64)>,
    },
    /// Typedefs and qualifiers: look through to `target`.
    Alias {
        target: u32,
    },
    Other,
}

/// Where a member lies, found by [`Btf::member_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLocation {
    pub byte_offset: u32,
    pub is_bitfield: bool,
    /// The first bit of a bit field within its byte (little-endian); 0 for other members.
    pub bit: u32,
}

/// Parsed BTF: types by id and named composite and enum types by name.
pub struct Btf {
    types: Vec<Type>,
    by_name: HashMap<(String, u32), u32>,
}

impl Btf {
    pub fn from_sys_fs() -> anyhow::Result<Self> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&data).with_context(|| format!("parsing BTF in {}", path.display()))
    }

    pub fn parse(data: &[u8]) -> anyhow::Result<Self> {
        let header = Reader { data, strings: &[] };
        ensure!(header.u16_at(0)? == MAGIC, "not BTF (bad magic)");
        let hdr_len = header.u32_at(4)? as usize;
        let type_off = hdr_len + header.u32_at(8)? as usize;
        let type_len = header.u32_at(12)? as usize;
        let str_off = hdr_len + header.u32_at(16)? as usize;
        let str_len = header.u32_at(20)? as usize;
        let strings = data
            .get(str_off..str_off + str_len)
            .context("string section out of bounds")?;
        let r = Reader { data, strings };

        // Type id 0 is `void`.
        let mut types = vec![Type::Other];
        let mut by_name = HashMap::new();
        let mut pos = type_off;
        let end = type_off + type_len;
        while pos < end {
            let name_off = r.u32_at(pos)?;
            let info = r.u32_at(pos + 4)?;
            let kind = (info >> 24) & 0x1f;
            let id = types.len() as u32;
            let (ty, body) = r.type_at(pos, id)?;
            pos += 12 + body;
            if matches!(kind, KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64) && name_off != 0 {
                by_name.entry((r.name(name_off), kind)).or_insert(id);
            }
            // The kernel names one typedef after each tracepoint it has a BTF-typed form of.
            if kind == KIND_TYPEDEF && name_off != 0 {
                let typedef = r.name(name_off);
                if typedef.starts_with(TRACEPOINT_TYPEDEF) {
                    by_name.entry((typedef, kind)).or_insert(id);
                }
            }
            types.push(ty);
        }
        Ok(Self { types, by_name })
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        // Qualifier chains are short; the bound guards against malformed loops.
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias { target } => id = *target,
                other => return Some(other),
            }
        }
        None
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        self.by_name
            .get(&(name.to_string(), KIND_STRUCT))
            .or_else(|| self.by_name.get(&(name.to_string(), KIND_UNION)))
            .copied()
    }

    /// Finds `name` among the members of composite type `id`, descending into anonymous
    /// structs and unions; returns its bit offset and member record.
    fn find_member(&self, id: u32, name: &str) -> Option<(u32, &Member)> {
        let Type::Composite { members } = self.resolve(id)? else {
            return None;
        };
        for member in members {
            if member.name == name {
                return Some((member.bit_offset, member));
            }
        }
        for member in members.iter().filter(|m| m.name.is_empty()) {
            if let Some((inner, found)) = self.find_member(member.type_id, name) {
                return Some((member.bit_offset + inner, found));
            }
        }
        None
    }

    /// Offset of a dotted member path such as `ns.inum` inside `struct <type_name>`.
    pub fn member_offset(&self, type_name: &str, path: &str) -> anyhow::Result<MemberLocation> {
        let mut id = self
            .struct_id(type_name)
            .with_context(|| format!("struct {type_name} not in BTF"))?;
        let mut bits = 0;
        let mut is_bitfield = false;
        for part in path.split('.') {
            let (offset, member) = self
                .find_member(id, part)
                .with_context(|| format!("member {part} of {type_name}.{path} not in BTF"))?;
            bits += offset;
            is_bitfield = member.bitfield_size.is_some();
            id = member.type_id;
        }
        ensure!(
            is_bitfield || bits % 8 == 0,
            "{type_name}.{path} is not byte aligned"
        );
        Ok(MemberLocation {
            byte_offset: bits / 8,
            is_bitfield,
            bit: bits % 8,
        })
    }

    /// Whether the kernel has the tracepoint `name` (for `tp_btf` programs).
    pub fn has_tracepoint(&self, name: &str) -> bool {
        self.by_name
            .contains_key(&(format!("{TRACEPOINT_TYPEDEF}{name}"), KIND_TYPEDEF))
    }

    /// Byte offset of a member path that must not be a bit field.
    pub fn byte_offset(&self, type_name: &str, path: &str) -> anyhow::Result<u32> {
        let location = self.member_offset(type_name, path)?;
        ensure!(!location.is_bitfield, "{type_name}.{path} is a bit field");
        Ok(location.byte_offset)
    }

    /// Name and value of every enumerator of `enum <name>`.
    pub fn enum_values(&self, name: &str) -> Option<&[(String, i64)]> {
        let id = self
            .by_name
            .get(&(name.to_string(), KIND_ENUM))
            .or_else(|| self.by_name.get(&(name.to_string(), KIND_ENUM64)))?;
        match self.types.get(*id as usize)? {
            Type::Enum { values } => Some(values),
            _ => None,
        }
    }
}

/// Reads little-endian words and names out of a BTF blob; a read past its end is an error.
struct Reader<'a> {
    data: &'a [u8],
    strings: &'a [u8],
}

impl Reader<'_> {
    fn u16_at(&self, off: usize) -> anyhow::Result<u16> {
        let bytes = self.data.get(off..off + 2).context("truncated BTF")?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32_at(&self, off: usize) -> anyhow::Result<u32> {
        let bytes = self.data.get(off..off + 4).context("truncated BTF")?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn name(&self, off: u32) -> String {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    }

    /// The type whose 12-byte header is at `pos`, and the length of what follows the header.
    fn type_at(&self, pos: usize, id: u32) -> anyhow::Result<(Type, usize)> {
        let info = self.u32_at(pos + 4)?;
        let size_or_type = self.u32_at(pos + 8)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;
        let body = pos + 12;
        Ok(match kind {
            KIND_STRUCT | KIND_UNION => {
                let members = self.members(body, vlen, kind_flag)?;
                (Type::Composite { members }, vlen * 12)
            }
            KIND_ENUM => (
                Type::Enum {
                    values: self.enum_values(body, vlen, kind_flag)?,
                },
                vlen * 8,
            ),
            KIND_ENUM64 => (
                Type::Enum {
                    values: self.enum64_values(body, vlen)?,
                },
                vlen * 12,
            ),
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => (
                Type::Alias {
                    target: size_or_type,
                },
                0,
            ),
            KIND_INT | KIND_VAR | KIND_DECL_TAG => (Type::Other, 4),
            KIND_ARRAY => (Type::Other, 12),
            KIND_FUNC_PROTO => (Type::Other, vlen * 8),
            KIND_DATASEC => (Type::Other, vlen * 12),
            KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => (Type::Other, 0),
            other => bail!("unknown BTF kind {other} at type {id}"),
        })
    }

    fn members(&self, pos: usize, vlen: usize, kind_flag: bool) -> anyhow::Result<Vec<Member>> {
        // Sized up front: collecting `Result`s would grow the vectors of some 100,000 types
        // by doubling, which start-up's peak memory felt (1.7 MiB).
        let mut members = Vec::with_capacity(vlen);
        for i in 0..vlen {
            let m = pos + i * 12;
            let raw_offset = self.u32_at(m + 8)?;
            let (bit_offset, bitfield_size) = if kind_flag {
                let size = raw_offset >> 24;
                (raw_offset & 0xff_ffff, (size != 0).then_some(size))
            } else {
                (raw_offset, None)
            };
            members.push(Member {
                name: self.name(self.u32_at(m)?),
                type_id: self.u32_at(m + 4)?,
                bit_offset,
                bitfield_size,
            });
        }
        Ok(members)
    }

    /// An enum's values; `kind_flag` set means signed ones.
    fn enum_values(
        &self,
        pos: usize,
        vlen: usize,
        kind_flag: bool,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let mut values = Vec::with_capacity(vlen);
        for i in 0..vlen {
            let e = pos + i * 8;
            let raw = self.u32_at(e + 4)?;
            let value = if kind_flag {
                raw as i32 as i64
            } else {
                raw as i64
            };
            values.push((self.name(self.u32_at(e)?), value));
        }
        Ok(values)
    }

    fn enum64_values(&self, pos: usize, vlen: usize) -> anyhow::Result<Vec<(String, i64)>> {
        let mut values = Vec::with_capacity(vlen);
        for i in 0..vlen {
            let e = pos + i * 12;
            let lo = self.u32_at(e + 4)? as u64;
            let hi = self.u32_at(e + 8)? as u64;
            values.push((self.name(self.u32_at(e)?), ((hi << 32) | lo) as i64));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob with: struct inner { int a; int b; }, struct outer { int x;
    /// union { struct inner in; long l; }; unsigned flag:3; }, enum color { RED = 1, BLUE = 7 }.
    fn sample() -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut add = |s: &str| {
            let off = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off
        };
        let (int, inner, a, b, outer, x, inn, l, flag, color, red, blue) = (
            add("int"),
            add("inner"),
            add("a"),
            add("b"),
            add("outer"),
            add("x"),
            add("in"),
            add("l"),
            add("flag"),
            add("color"),
            add("RED"),
            add("BLUE"),
        );
        let mut types = Vec::new();
        let mut word = |w: u32| types.extend_from_slice(&w.to_le_bytes());
        // 1: int
        word(int);
        word(KIND_INT << 24);
        word(4);
        word(32);
        // 2: struct inner
        word(inner);
        word(KIND_STRUCT << 24 | 2);
        word(8);
        word(a);
        word(1);
        word(0);
        word(b);
        word(1);
        word(32);
        // 3: anonymous union { struct inner in; int l; }
        word(0);
        word(KIND_UNION << 24 | 2);
        word(8);
        word(inn);
        word(2);
        word(0);
        word(l);
        word(1);
        word(0);
        // 4: struct outer (kind_flag: bit field sizes in offsets)
        word(outer);
        word(1 << 31 | KIND_STRUCT << 24 | 3);
        word(24);
        word(x);
        word(1);
        word(0);
        word(0);
        word(3);
        word(64);
        word(flag);
        word(1);
        word(3 << 24 | 128);
        // 5: enum color
        word(color);
        word(KIND_ENUM << 24 | 2);
        word(4);
        word(red);
        word(1);
        word(blue);
        word(7);

        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.push(1); // version
        blob.push(0); // flags
        blob.extend_from_slice(&24u32.to_le_bytes()); // hdr_len
        blob.extend_from_slice(&0u32.to_le_bytes()); // type_off
        blob.extend_from_slice(&(types.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(types.len() as u32).to_le_bytes()); // str_off
        blob.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        blob.extend_from_slice(&types);
        blob.extend_from_slice(&strings);
        blob
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_paths() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.byte_offset("outer", "x").unwrap(), 0);
        assert_eq!(btf.byte_offset("outer", "in").unwrap(), 8);
        assert_eq!(btf.byte_offset("outer", "in.b").unwrap(), 12);
        assert_eq!(btf.byte_offset("outer", "l").unwrap(), 8);
        let flag = btf.member_offset("outer", "flag").unwrap();
        assert!(flag.is_bitfield);
        assert!(btf.byte_offset("outer", "flag").is_err());
        assert!(btf.byte_offset("outer", "missing").is_err());
        assert!(btf.byte_offset("nothere", "x").is_err());
    }

    #[test]
    fn reads_enums() {
        let btf = Btf::parse(&sample()).unwrap();
        let values = btf.enum_values("color").unwrap();
        assert_eq!(values, &[("RED".to_string(), 1), ("BLUE".to_string(), 7)]);
        assert!(btf.enum_values("shape").is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut truncated = sample();
        truncated.truncate(40);
        assert!(Btf::parse(&truncated).is_err());
    }

    #[test]
    fn reads_the_running_kernel() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("skipped: this kernel has no BTF at {}", path.display());
            return;
        }
        let btf = Btf::from_file(path).unwrap();
        assert!(btf.byte_offset("sk_buff", "len").unwrap() > 0);
        assert!(btf.byte_offset("net", "ns.inum").unwrap() > 0);
        let reasons = btf.enum_values("skb_drop_reason").unwrap();
        assert!(
            reasons
                .iter()
                .any(|(n, _)| n == "SKB_DROP_REASON_NO_SOCKET")
        );
    }
}

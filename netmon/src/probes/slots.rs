//! The agent's side of the kernel's slot tables (see `netmon-common`): the tags, memory-mapped
//! and read without a system call a slot, and the per-CPU counts of the slots in use.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, Pod,
    maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuValues},
};
use netmon_common::SlotTag;

/// The tags of one table, mapped into the agent's memory.
pub struct Tags {
    base: NonNull<SlotTag>,
    slots: usize,
    length: usize,
}

// SAFETY: the mapping is owned by this value and only read or written through it, by the one
// thread that polls; the kernel's concurrent writers use atomics on the same memory.
unsafe impl Send for Tags {}

impl Tags {
    /// Maps the tag array `name` of `slots` entries.
    pub fn map(ebpf: &Ebpf, name: &str, slots: u32) -> anyhow::Result<Self> {
        let Map::Array(data) = map(ebpf, name)? else {
            bail!("map {name} is not an array");
        };
        let slots = slots as usize;
        let page = page_size();
        let length = (slots * size_of::<SlotTag>()).div_ceil(page) * page;
        // SAFETY: a shared mapping of a BPF_F_MMAPABLE array map, whose values start at
        // offset 0 and are `size_of::<SlotTag>()` apart (a multiple of 8).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context(format!("mapping {name}"));
        }
        let base = NonNull::new(base.cast()).ok_or_else(|| anyhow!("mapping {name}: null"))?;
        Ok(Self {
            base,
            slots,
            length,
        })
    }

    fn slot(&self, index: usize) -> *mut SlotTag {
        debug_assert!(index < self.slots);
        // SAFETY: within the mapping.
        unsafe { self.base.as_ptr().add(index) }
    }

    /// The slots in use, with their tags. A slot whose claim is still being completed (its
    /// last word not yet written) may show a tag its owner does not use; its counts are then
    /// zero, and it is complete by the next read.
    pub fn claimed(&self) -> impl Iterator<Item = (u32, SlotTag)> + '_ {
        (0..self.slots).filter_map(|index| {
            let slot = self.slot(index);
            // SAFETY: aligned reads within the mapping; the kernel writes each word whole.
            let id = unsafe { std::ptr::read_volatile(&raw const (*slot).id) };
            if id == 0 {
                return None;
            }
            // SAFETY: as above.
            let tag = unsafe {
                SlotTag {
                    id,
                    extra: std::ptr::read_volatile(&raw const (*slot).extra),
                    extra2: std::ptr::read_volatile(&raw const (*slot).extra2),
                    meta: std::ptr::read_volatile(&raw const (*slot).meta),
                }
            };
            Some((index as u32, tag))
        })
    }

    /// Frees a slot: the last word of the identity first, so that no program matches it any
    /// more, then the rest, and the claim last, so that a program that claims the slot again
    /// never finds old words in it.
    fn free(&self, index: u32) {
        let slot = self.slot(index as usize);
        // SAFETY: aligned writes within the mapping.
        unsafe {
            std::ptr::write_volatile(&raw mut (*slot).extra2, 0);
            std::ptr::write_volatile(&raw mut (*slot).extra, 0);
            std::ptr::write_volatile(&raw mut (*slot).meta, 0);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            std::ptr::write_volatile(&raw mut (*slot).id, 0);
        }
    }
}

impl Drop for Tags {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Tags::map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.length) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Every slot in use in a table, with its tag and what `get` reads of its counts.
fn read_claimed<T>(
    tags: &Tags,
    counts: &str,
    get: impl Fn(u32) -> Result<T, MapError>,
) -> anyhow::Result<Vec<(SlotTag, T)>> {
    tags.claimed()
        .map(|(index, tag)| {
            let value = get(index).with_context(|| format!("reading {counts}[{index}]"))?;
            Ok((tag, value))
        })
        .collect()
}

/// Frees the slots whose tags `gone` picks, their counts zeroed first by `zero` so that the
/// next owner starts from nothing; returns (freed, left in use).
fn free_claimed(
    tags: &Tags,
    counts: &str,
    gone: &dyn Fn(&SlotTag) -> bool,
    mut zero: impl FnMut(u32, &SlotTag) -> anyhow::Result<()>,
) -> anyhow::Result<(usize, usize)> {
    let (mut freed, mut left) = (0, 0);
    let claimed: Vec<(u32, SlotTag)> = tags.claimed().collect();
    for (index, tag) in claimed {
        if !gone(&tag) {
            left += 1;
            continue;
        }
        zero(index, &tag).with_context(|| format!("zeroing {counts}[{index}]"))?;
        tags.free(index);
        freed += 1;
    }
    Ok((freed, left))
}

/// The map `name` of the object.
pub(super) fn map<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Map> {
    ebpf.map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))
}

/// The map `name`, taken out of the object for its reader to own.
pub(super) fn take_map(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))
}

/// The per-CPU counts of every slot in use in a table: (tag, one value per CPU).
pub fn read<V: Pod>(
    ebpf: &Ebpf,
    tags: &Tags,
    counts: &str,
) -> anyhow::Result<Vec<(SlotTag, PerCpuValues<V>)>> {
    let array: PerCpuArray<&MapData, V> = PerCpuArray::try_from(map(ebpf, counts)?)?;
    read_claimed(tags, counts, |index| array.get(&index, 0))
}

/// [`read`] with each slot's index.
pub fn read_indexed<V: Pod>(
    ebpf: &Ebpf,
    tags: &Tags,
    counts: &str,
) -> anyhow::Result<Vec<(u32, SlotTag, PerCpuValues<V>)>> {
    let array: PerCpuArray<&MapData, V> = PerCpuArray::try_from(map(ebpf, counts)?)?;
    tags.claimed()
        .map(|(index, tag)| {
            let value = array
                .get(&index, 0)
                .with_context(|| format!("reading {counts}[{index}]"))?;
            Ok((index, tag, value))
        })
        .collect()
}

/// The counts of every slot in use in a table whose counts are shared by all CPUs.
pub fn read_shared<V: Pod>(
    ebpf: &Ebpf,
    tags: &Tags,
    counts: &str,
) -> anyhow::Result<Vec<(SlotTag, V)>> {
    let array: Array<&MapData, V> = Array::try_from(map(ebpf, counts)?)?;
    read_claimed(tags, counts, |index| array.get(&index, 0))
}

/// Frees the slots of a per-CPU table whose tags `gone` picks; returns (freed, left in use).
pub fn free_where<V: Pod + Default>(
    ebpf: &mut Ebpf,
    tags: &Tags,
    counts: &str,
    gone: &dyn Fn(&SlotTag) -> bool,
) -> anyhow::Result<(usize, usize)> {
    let mut array: PerCpuArray<&mut MapData, V> = PerCpuArray::try_from(map_mut(ebpf, counts)?)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, err)| err)?;
    free_claimed(tags, counts, gone, |index, _| {
        let zeros = PerCpuValues::try_from(vec![V::default(); cpus])?;
        Ok(array.set(index, zeros, 0)?)
    })
}

/// [`free_where`] for slots whose owners can count no more: returns each freed slot's index,
/// tag and counts as they were last, read just before they were zeroed.
pub fn take_where<V: Pod + Default>(
    ebpf: &mut Ebpf,
    tags: &Tags,
    counts: &str,
    gone: &dyn Fn(&SlotTag) -> bool,
) -> anyhow::Result<Vec<(u32, SlotTag, PerCpuValues<V>)>> {
    let mut array: PerCpuArray<&mut MapData, V> = PerCpuArray::try_from(map_mut(ebpf, counts)?)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, err)| err)?;
    let mut taken = Vec::new();
    free_claimed(tags, counts, gone, |index, tag| {
        taken.push((index, *tag, array.get(&index, 0)?));
        let zeros = PerCpuValues::try_from(vec![V::default(); cpus])?;
        Ok(array.set(index, zeros, 0)?)
    })?;
    Ok(taken)
}

/// [`free_where`] for a table whose counts are shared by all CPUs.
pub fn free_shared_where<V: Pod + Default>(
    ebpf: &mut Ebpf,
    tags: &Tags,
    counts: &str,
    gone: &dyn Fn(&SlotTag) -> bool,
) -> anyhow::Result<(usize, usize)> {
    let mut array: Array<&mut MapData, V> = Array::try_from(map_mut(ebpf, counts)?)?;
    free_claimed(tags, counts, gone, |index, _| {
        Ok(array.set(index, V::default(), 0)?)
    })
}

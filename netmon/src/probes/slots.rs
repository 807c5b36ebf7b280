//! The agent's side of the kernel's slot tables (see `netmon-common`): the tags, memory-mapped
//! and read without a system call a slot, and the per-CPU counts of the slots in use.
use std::{
    cell::RefCell,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::Ordering,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
};
use netmon_common::slots::SlotTag;

/// An array map created with `BPF_F_MMAPABLE`, mapped into the agent's memory.
pub struct Mapped<T> {
    base: NonNull<T>,
    entries: usize,
    length: usize,
}

// SAFETY: the mapping is owned by this value and only read or written through it, by the one
// thread that polls; the kernel's concurrent writers use atomics or whole words on the same
// memory.
unsafe impl<T> Send for Mapped<T> {}

impl<T> Mapped<T> {
    /// Maps the array `name` of `entries` values.
    pub fn map(ebpf: &Ebpf, name: &str, entries: u32) -> anyhow::Result<Self> {
        let Map::Array(data) = map(ebpf, name)? else {
            bail!("map {name} is not an array");
        };
        let entries = entries as usize;
        let page = page_size();
        let length = (entries * size_of::<T>()).div_ceil(page) * page;
        // SAFETY: a shared mapping of a BPF_F_MMAPABLE array map, whose values start at
        // offset 0 and are `size_of::<T>()` apart (the types mapped are multiples of 8).
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
            entries,
            length,
        })
    }

    pub(super) fn entry(&self, index: usize) -> *mut T {
        debug_assert!(index < self.entries);
        // SAFETY: within the mapping.
        unsafe { self.base.as_ptr().add(index) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Mapped::map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.length) };
    }
}

/// The tags of one table, mapped into the agent's memory.
pub struct Tags {
    slots: Mapped<SlotTag>,
    /// The table's claims by slot index, in the programs for kernels without `bpf_loop`
    /// (`bounded_walk`), where a program claims a slot by inserting its index: freeing the
    /// slot removes it.
    claims: Option<RefCell<HashMap<MapData, u32, u32>>>,
}

impl Tags {
    /// Maps the tag array `name` of `slots` entries, with the claims map `claims` where the
    /// object has one.
    pub fn map(ebpf: &Ebpf, name: &str, claims: &str, slots: u32) -> anyhow::Result<Self> {
        let claims = match ebpf.map(claims) {
            None => None,
            Some(Map::HashMap(data)) => {
                let fd = data.fd().as_fd().try_clone_to_owned()?;
                let data = MapData::from_fd(fd).with_context(|| format!("opening {claims}"))?;
                Some(RefCell::new(HashMap::try_from(Map::HashMap(data))?))
            }
            Some(_) => bail!("map {claims} is not a hash map"),
        };
        Ok(Self {
            slots: Mapped::map(ebpf, name, slots)?,
            claims,
        })
    }

    fn slot(&self, index: usize) -> *mut SlotTag {
        self.slots.entry(index)
    }

    /// The slots in use, with their tags. A slot whose claim is still being completed (its
    /// last word not yet written) may show a tag its owner does not use; its counts are then
    /// zero, and it is complete by the next read.
    pub fn claimed(&self) -> impl Iterator<Item = (u32, SlotTag)> + '_ {
        (0..self.slots.entries).filter_map(|index| {
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

    /// Frees a slot: [`Tags::retire`], then [`Tags::release`].
    fn free(&self, index: u32) {
        self.retire(index);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.release(index);
    }

    /// The first half of freeing a slot: the last word of the identity first, so that no
    /// program matches it any more, then the second. The slot is not free yet: no program
    /// claims it until [`Tags::release`].
    pub(super) fn retire(&self, index: u32) {
        let slot = self.slot(index as usize);
        // SAFETY: aligned writes within the mapping.
        unsafe {
            std::ptr::write_volatile(&raw mut (*slot).extra2, 0);
            std::ptr::write_volatile(&raw mut (*slot).extra, 0);
        }
    }

    /// Undoes [`Tags::retire`]: the slot counts for `tag` again, its last word last.
    pub(super) fn restore(&self, index: u32, tag: &SlotTag) {
        let slot = self.slot(index as usize);
        // SAFETY: aligned writes within the mapping.
        unsafe {
            std::ptr::write_volatile(&raw mut (*slot).extra, tag.extra);
            std::sync::atomic::fence(Ordering::SeqCst);
            std::ptr::write_volatile(&raw mut (*slot).extra2, tag.extra2);
        }
    }

    /// The second half of freeing a slot, once retired and its counts zeroed: the claim last,
    /// so that a program that claims the slot again never finds old words in it. Where slots
    /// are claimed by inserting their index, the index goes after the `id`: a program that
    /// saw the slot free before cannot claim it until it is.
    pub(super) fn release(&self, index: u32) {
        let slot = self.slot(index as usize);
        // SAFETY: aligned writes within the mapping.
        unsafe {
            std::ptr::write_volatile(&raw mut (*slot).meta, 0);
            std::sync::atomic::fence(Ordering::SeqCst);
            std::ptr::write_volatile(&raw mut (*slot).id, 0);
        }
        if let Some(claims) = &self.claims {
            std::sync::atomic::fence(Ordering::SeqCst);
            match claims.borrow_mut().remove(&index) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                // The slot stays claimed, unused, until the agent restarts.
                Err(err) => tracing::warn!("releasing the claim of slot {index}: {err}"),
            }
        }
    }
}

/// A table's counts in one array mapped into the agent's memory, a region of `slots` values
/// for each possible CPU (the kernel side's `CpuRegions`).
pub struct CpuRegions<V> {
    values: Mapped<V>,
    slots: usize,
}

impl<V: Copy + Default> CpuRegions<V> {
    pub fn map(ebpf: &Ebpf, name: &str, slots: u32, cpus: u32) -> anyhow::Result<Self> {
        Ok(Self {
            values: Mapped::map(ebpf, name, slots * cpus)?,
            slots: slots as usize,
        })
    }

    /// CPU `cpu`'s counts in slot `index`.
    pub(super) fn get(&self, cpu: usize, index: u32) -> V {
        // SAFETY: a value within the mapping, which its CPU writes a word at a time.
        unsafe { std::ptr::read_volatile(self.values.entry(cpu * self.slots + index as usize)) }
    }

    /// Zeroes every CPU's counts in slot `index`, which no program writes any more.
    pub(super) fn zero(&self, index: u32) {
        for at in (index as usize..self.values.entries).step_by(self.slots) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(self.values.entry(at), V::default()) };
        }
    }
}

/// The number of possible CPUs, which the kernel's per-CPU regions are sized for.
pub fn possible_cpus() -> anyhow::Result<u32> {
    let cpus = aya::util::nr_cpus().map_err(|(_, err)| err)?;
    Ok(u32::try_from(cpus)?)
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

/// The counts of every slot in use in a table whose counts are shared by all CPUs.
pub fn read_shared<V: Pod>(
    ebpf: &Ebpf,
    tags: &Tags,
    counts: &str,
) -> anyhow::Result<Vec<(SlotTag, V)>> {
    let array: Array<&MapData, V> = Array::try_from(map(ebpf, counts)?)?;
    read_claimed(tags, counts, |index| array.get(&index, 0))
}

/// Frees the slots of a per-CPU table (a value for each of `cpus`) whose tags `gone` picks;
/// returns (freed, left in use).
pub fn free_where<V: Pod + Default>(
    ebpf: &mut Ebpf,
    tags: &Tags,
    counts: &str,
    cpus: u32,
    gone: &dyn Fn(&SlotTag) -> bool,
) -> anyhow::Result<(usize, usize)> {
    let mut array: PerCpuArray<&mut MapData, V> = PerCpuArray::try_from(map_mut(ebpf, counts)?)?;
    free_claimed(tags, counts, gone, |index, _| {
        let zeros = PerCpuValues::try_from(vec![V::default(); cpus as usize])?;
        Ok(array.set(index, zeros, 0)?)
    })
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

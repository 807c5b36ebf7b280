//! The socket I/O table's counts (see `SocketMemo` in `netmon-common`): each CPU's region of
//! the mapped counts, and what each CPU's memos hold for their slots, read as of one moment
//! between two of the programs' moves.
use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering, fence},
    time::{Duration, Instant},
};

use anyhow::bail;
use aya::Ebpf;
use netmon_common::{
    processes::{self, MAX_PROCESS_KEYS, SocketIo},
    slots::SlotTag,
    socket_memo::{self, SOCKET_MEMOS_PER_CPU, SocketMemo},
};

use crate::probes::slots::{CpuRegions, Mapped, Tags};

/// How long a CPU's memos may stay in the middle of a move before a read gives up: a move is
/// a few dozen instructions of a program that cannot sleep.
const MOVE_WAIT: Duration = Duration::from_millis(100);

/// A slot in use, its tag, and its counts summed over the CPUs.
pub type SlotIo = (u32, SlotTag, SocketIo);

/// The socket I/O counts and the socket hooks' memos, memory-mapped.
pub struct ProcessCounts {
    counts: CpuRegions<SocketIo>,
    memos: Mapped<SocketMemo>,
    cpus: usize,
}

impl ProcessCounts {
    pub fn map(ebpf: &Ebpf, cpus: u32) -> anyhow::Result<Self> {
        Ok(Self {
            counts: CpuRegions::map(ebpf, processes::COUNTS, MAX_PROCESS_KEYS, cpus)?,
            memos: Mapped::map(ebpf, socket_memo::SOCKET_MEMOS, cpus * SOCKET_MEMOS_PER_CPU)?,
            cpus: cpus as usize,
        })
    }

    /// Every slot in use, with its counts.
    pub fn read(&self, tags: &Tags) -> anyhow::Result<Vec<SlotIo>> {
        let claimed: Vec<(u32, SlotTag)> = tags.claimed().collect();
        self.sum(&claimed)
    }

    /// Frees the slots whose tags `gone` picks, for slots whose owners count no more: returns
    /// each with its last counts.
    ///
    /// A slot is retired first, so that no move adds to it any more. A move that found it
    /// still in use before it was retired has begun by the time `sum` first reads that
    /// CPU's moves (the fence orders the retirement before that read, and the program's
    /// compare-and-swap orders its start of a move before its look at the tag), so `sum`
    /// reads that CPU after the move. Then the counts are read, zeroed, and the slot
    /// released.
    pub fn take_where(
        &self,
        tags: &Tags,
        gone: &dyn Fn(&SlotTag) -> bool,
    ) -> anyhow::Result<Vec<SlotIo>> {
        let taken: Vec<(u32, SlotTag)> = tags.claimed().filter(|(_, tag)| gone(tag)).collect();
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        for (index, _) in &taken {
            tags.retire(*index);
        }
        fence(Ordering::SeqCst);
        let last = match self.sum(&taken) {
            Ok(last) => last,
            Err(err) => {
                // No program claimed them meanwhile: they are in use again, for the next poll.
                for (index, tag) in &taken {
                    tags.restore(*index, tag);
                }
                return Err(err);
            }
        };
        for (index, _) in &taken {
            self.counts.zero(*index);
            tags.release(*index);
        }
        self.outdate();
        Ok(last)
    }

    /// The counts of `slots`, with what the memos hold for them.
    fn sum(&self, slots: &[(u32, SlotTag)]) -> anyhow::Result<Vec<SlotIo>> {
        let mut totals = vec![SocketIo::default(); slots.len()];
        for cpu in 0..self.cpus {
            let (values, memos) = self.read_cpu(cpu, slots)?;
            add(&mut totals, slots, &values, &memos);
        }
        Ok(slots
            .iter()
            .zip(totals)
            .map(|((index, tag), total)| (*index, *tag, total))
            .collect())
    }

    /// CPU `cpu`'s counts of `slots` and its memos, read when no move was under way, and
    /// none happened until they were read.
    fn read_cpu(
        &self,
        cpu: usize,
        slots: &[(u32, SlotTag)],
    ) -> anyhow::Result<(Vec<SocketIo>, Vec<SocketMemo>)> {
        let deadline = Instant::now() + MOVE_WAIT;
        loop {
            let before = self.moves(cpu, Ordering::Acquire);
            if before.iter().all(|moves| moves % 2 == 0) {
                let values = slots
                    .iter()
                    .map(|(index, _)| self.counts.get(cpu, *index))
                    .collect();
                let memos = self
                    .memo_indexes(cpu)
                    // SAFETY: an entry within the mapping; whatever a word read while it is
                    // being written holds is not used unless the moves are the same after.
                    .map(|index| unsafe { std::ptr::read_volatile(self.memos.entry(index)) })
                    .collect();
                fence(Ordering::Acquire);
                if self.moves(cpu, Ordering::Relaxed) == before {
                    return Ok((values, memos));
                }
            }
            if Instant::now() > deadline {
                bail!("CPU {cpu}'s socket memos stayed in the middle of a move for {MOVE_WAIT:?}");
            }
            std::hint::spin_loop();
        }
    }

    fn memo_indexes(&self, cpu: usize) -> std::ops::Range<usize> {
        let per_cpu = SOCKET_MEMOS_PER_CPU as usize;
        cpu * per_cpu..(cpu + 1) * per_cpu
    }

    /// The moves counted by each of CPU `cpu`'s memos.
    fn moves(&self, cpu: usize, order: Ordering) -> Vec<u64> {
        self.memo_indexes(cpu)
            .map(|index| {
                // SAFETY: an aligned u64 within the mapping, written by the programs with
                // atomic instructions.
                unsafe { AtomicU64::from_ptr(&raw mut (*self.memos.entry(index)).moves) }
                    .load(order)
            })
            .collect()
    }

    /// Makes every memo written so far one that no call adds to: called after freeing slots,
    /// so that the thread of a process wrongly judged gone finds its slot again.
    fn outdate(&self) {
        for index in 0..self.cpus * SOCKET_MEMOS_PER_CPU as usize {
            // SAFETY: an aligned u32 within the mapping, which the programs only read.
            let epoch = unsafe { AtomicU32::from_ptr(&raw mut (*self.memos.entry(index)).epoch) };
            epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Adds one CPU's counts of `slots` (`values`, in the same order), and what its memos hold for
/// them, to `totals`. A memo's counts are its slot's while the slot's tag is the memo's
/// identity: once the slot is freed, they were taken with its last counts.
fn add(
    totals: &mut [SocketIo],
    slots: &[(u32, SlotTag)],
    values: &[SocketIo],
    memos: &[SocketMemo],
) {
    for ((total, (index, tag)), value) in totals.iter_mut().zip(slots).zip(values) {
        let held = memos
            .iter()
            .filter(|memo| memo.slot == *index && memo.counts_for(tag));
        for (bytes, calls) in std::iter::once((value.bytes, value.calls))
            .chain(held.map(|memo| (memo.bytes, memo.calls)))
        {
            total.bytes += bytes;
            total.calls += calls;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(id: u64) -> SlotTag {
        SlotTag {
            id,
            extra: 7,
            extra2: 1 << 63 | 1000,
            meta: 3,
        }
    }

    fn memo(slot: u32, of: &SlotTag, bytes: u64, calls: u64) -> SocketMemo {
        SocketMemo {
            slot,
            bytes,
            calls,
            id: of.id,
            extra: of.extra,
            extra2: of.extra2,
            ..Default::default()
        }
    }

    #[test]
    fn a_memo_adds_to_its_slot_while_the_slot_counts_for_it() {
        let slots = [(4, tag(10)), (9, tag(20))];
        let values = [
            SocketIo {
                bytes: 100,
                calls: 2,
            },
            SocketIo {
                bytes: 50,
                calls: 1,
            },
        ];
        let mut totals = vec![SocketIo::default(); 2];
        // One memo holds counts of slot 4; one names slot 9 for an identity it no longer has
        // (freed and claimed again); neither adds to the other's slot.
        let memos = [memo(4, &tag(10), 30, 3), memo(9, &tag(99), 1000, 10)];
        add(&mut totals, &slots, &values, &memos);
        assert_eq!(
            totals,
            [
                SocketIo {
                    bytes: 130,
                    calls: 5
                },
                SocketIo {
                    bytes: 50,
                    calls: 1
                }
            ]
        );
        // A second CPU's counts add to the first's.
        add(&mut totals, &slots, &values, &[memo(9, &tag(20), 5, 1)]);
        assert_eq!(totals[0].bytes, 230);
        assert_eq!((totals[1].bytes, totals[1].calls), (105, 3));
    }
}

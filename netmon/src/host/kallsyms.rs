//! Kernel code addresses to function names (`nf_hook_slow+0x9c`), from `/proc/kallsyms`
//! read line by line when an address is new: the table is megabytes and is never kept, only
//! the names of the addresses asked for.
use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    io::{BufRead, BufReader, Seek as _, SeekFrom},
};

/// Names kept at most; beyond, the cache starts again (the addresses that drops come from
/// are a few dozen).
const CACHE: usize = 4096;
/// Addresses resolved by one pass at most: each costs a comparison on every line.
const PER_PASS: usize = 64;

/// The names of the addresses seen so far.
#[derive(Debug)]
pub struct KernelSymbols {
    /// The table, opened while the agent had all its privileges: the kernel shows the
    /// addresses to a reader with `CAP_SYSLOG` when it opens the file, and the poll thread
    /// gives that capability up after start.
    table: std::io::Result<File>,
    names: HashMap<u64, String>,
}

impl KernelSymbols {
    pub fn open() -> Self {
        Self {
            table: File::open("/proc/kallsyms"),
            names: HashMap::new(),
        }
    }

    /// The name of `address`; `None` until [`KernelSymbols::learn`] has been given it.
    pub fn name(&self, address: u64) -> Option<&str> {
        self.names.get(&address).map(String::as_str)
    }

    /// Finds the function each of `addresses` lies in, reading `/proc/kallsyms` once if any
    /// is new. An address no symbol covers (or a table that shows no addresses to this
    /// process) is named by its number.
    pub fn learn(&mut self, addresses: &BTreeSet<u64>) -> anyhow::Result<()> {
        let new: Vec<u64> = addresses
            .iter()
            .copied()
            .filter(|a| !self.names.contains_key(a))
            .take(PER_PASS)
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        if self.names.len() + new.len() > CACHE {
            self.names.clear();
        }
        let table = self
            .table
            .as_mut()
            .map_err(|e| anyhow::anyhow!("/proc/kallsyms: {e}"))?;
        table.seek(SeekFrom::Start(0))?;
        let found = nearest_symbols(BufReader::new(&*table), &new)?;
        for (address, symbol) in new.into_iter().zip(found) {
            let name = match symbol {
                Some((start, name)) => format!("{name}+{:#x}", address - start),
                None => format!("{address:#x}"),
            };
            self.names.insert(address, name);
        }
        Ok(())
    }
}

/// For each of `addresses`, the code symbol (`t`/`T`) that starts closest below or at it.
fn nearest_symbols(
    table: impl BufRead,
    addresses: &[u64],
) -> std::io::Result<Vec<Option<(u64, String)>>> {
    let mut best: Vec<Option<(u64, String)>> = vec![None; addresses.len()];
    let mut table = table;
    // One buffer for the hundred thousand lines.
    let mut line = String::new();
    loop {
        line.clear();
        if table.read_line(&mut line)? == 0 {
            break;
        }
        let mut fields = line.split_whitespace();
        let (Some(start), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !kind.eq_ignore_ascii_case("t") {
            continue;
        }
        let Ok(start) = u64::from_str_radix(start, 16) else {
            continue;
        };
        if start == 0 {
            continue;
        }
        for (address, best) in addresses.iter().zip(best.iter_mut()) {
            if start <= *address && best.as_ref().is_none_or(|(b, _)| *b < start) {
                *best = Some((start, name.to_string()));
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_closest_code_symbol_below_each_address() {
        let table = "ffffffff81000000 T _stext\n\
                     ffffffff81a00000 t nf_hook_slow\n\
                     ffffffff81a00100 D some_data\n\
                     ffffffff81a00200 T ip_rcv\n\
                     ffffffffc0000000 t veth_xmit\t[veth]\n";
        let found = nearest_symbols(
            table.as_bytes(),
            &[0xffff_ffff_81a0_009c, 0xffff_ffff_c000_0010, 0x10],
        )
        .unwrap();
        assert_eq!(
            found,
            [
                Some((0xffff_ffff_81a0_0000, "nf_hook_slow".to_string())),
                Some((0xffff_ffff_c000_0000, "veth_xmit".to_string())),
                None
            ]
        );
    }

    #[test]
    fn a_table_without_addresses_names_nothing() {
        let table = "0000000000000000 T _stext\n0000000000000000 t nf_hook_slow\n";
        assert_eq!(
            nearest_symbols(table.as_bytes(), &[0xffff_ffff_81a0_009c]).unwrap(),
            [None]
        );
    }
}

//! Table 1: what netmon's programs cost the kernel per event, above an empty program on the
//! same hook, by attach method; then table 2, against bpftrace, on the same traffic.
use std::{collections::BTreeMap, fmt::Write as _};

use netmon::model::probes::{AttachMethod, Hook};
use netmon_tests::{Netns, Veth};

use crate::{
    bpftrace,
    figures::median,
    kernel_rounds::{Row, netmon_run},
    process::{DEFAULT_POLL, SETTLE},
    workload::{
        CONNECTIONS, LOSSY_BYTES, LOSSY_EVERY, LossyPort, RECEIVE_CHUNK, REFUSED, ROUNDS, SLICES,
        TCP_SLICES,
    },
};

/// The configuration that loads the programs for kernels without `bpf_loop`.
const BOUNDED_WALK: &str = "program_variant = \"bounded_walk\"\n";

/// The configuration that turns drop sampling off, to measure what sampling costs.
const NO_SAMPLING: &str = "[drop_samples]\nper_cpu_rate = 0.0\nper_cpu_burst = 0\n";

pub(crate) fn kernel_cost() -> String {
    let methods = methods();
    let stats =
        aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF run-time statistics");
    let a = Netns::new("bench-a");
    let b = Netns::new("bench-b");
    let veth = Veth::connect(&a, &b, 250);
    let lossy = LossyPort::new(&a, &b, &veth);
    let before_bin = std::env::var_os("NETMON_BEFORE_BIN");
    let mut out = header(before_bin.is_some());
    let mut per_packet_above = Vec::new();
    for &method in &methods {
        let mut binaries = vec![None];
        binaries.extend(before_bin.as_deref().map(Some));
        let mut runs = netmon_run(method, "", &binaries, &a, &b, &veth).into_iter();
        let rows = runs.next().unwrap_or_default();
        let before: BTreeMap<Hook, f64> = runs
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|row| (row.hook, row.above().0))
            .filter(|(_, above)| !above.is_nan())
            .collect();
        for row in rows {
            let above = method_row(&mut out, method, &row, &before);
            // Table 2 sets bpftrace's one-liner, which counts transmits and receives, beside
            // netmon's programs on those two hooks.
            if method == AttachMethod::TpBtf
                && matches!(row.hook, Hook::NetDevXmit | Hook::NetifReceiveSkb)
            {
                per_packet_above.push(above);
            }
        }
    }
    if methods.contains(&AttachMethod::TpBtf) {
        sampling_off_row(&mut out, &a, &b, &veth);
        bounded_walk_rows(&mut out, &a, &b, &veth);
    }
    out.push_str(&bpftrace::against_bpftrace(&a, &veth, &per_packet_above));
    drop(lossy);
    drop(stats);
    out
}

/// The methods measured: those named in `NETMON_BENCH_METHODS` (separated by spaces), or
/// tp_btf, raw_tp and tracepoint.
fn methods() -> Vec<AttachMethod> {
    std::env::var("NETMON_BENCH_METHODS")
        .unwrap_or_else(|_| "tp_btf raw_tp tracepoint".to_string())
        .split_whitespace()
        .map(|method| {
            method
                .parse()
                .unwrap_or_else(|e| panic!("NETMON_BENCH_METHODS: {e}"))
        })
        .collect()
}

fn header(before_measured: bool) -> String {
    format!(
        "## 1. Kernel cost per event\n\nFrom the kernel's BPF statistics (`run_time_ns / \
         run_cnt`), with an empty raw tracepoint program attached to the same hook in the same \
         run as the floor. Workload: 200,000 UDP datagrams across a veth pair to a closed port, \
         {CONNECTIONS} TCP connections, {REFUSED} refused ones, and {} transfers of {} KiB that lose \
         one segment in {LOSSY_EVERY} (retransmits) read {RECEIVE_CHUNK} bytes at a time, in {ROUNDS} rounds, each with a freshly \
         started agent (default poll interval, {}), measured {} s after its programs are \
         attached. A round is measured in windows, {TCP_SLICES} slices of its TCP part and \
         {SLICES} of its datagrams, and its figure is the median of (netmon - empty) over the windows in \
         which the hook ran; each figure below is the median of the rounds, with the smallest \
         and largest round beside it. \"before\" is {}, its rounds taking turns with \
         this version's in the same run.\n\n\
         | method | hook | runs | netmon ns/run | empty ns/run | above empty | rounds | target | before | |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        ROUNDS * TCP_SLICES,
        LOSSY_BYTES >> 10,
        DEFAULT_POLL,
        SETTLE.as_secs(),
        if before_measured {
            "the previous version's agent (`cargo xtask bench --before REV`), measured the same way"
        } else {
            "not measured (`cargo xtask bench --before REV` measures it)"
        }
    )
}

/// Writes `row` of `method`, beside the previous version's figure in `before`; returns its
/// figure above the empty program.
fn method_row(
    out: &mut String,
    method: AttachMethod,
    row: &Row,
    before: &BTreeMap<Hook, f64>,
) -> f64 {
    let (above, low, high) = row.above();
    let target = target_ns(row.hook);
    let verdict = if above.is_nan() {
        "no events"
    } else if above <= target {
        "met"
    } else if method == AttachMethod::TpBtf {
        "missed"
    } else {
        method_note(method)
    };
    let _ = writeln!(
        out,
        "| {method} | {} | {} | {:.1} | {:.1} | **{above:+.1}** | {low:+.1} .. {high:+.1} | \
         +{target:.0} | {} | {verdict} |",
        row.hook.as_str(),
        row.runs,
        median(&row.ours),
        median(&row.floors),
        before
            .get(&row.hook)
            .map_or("-".to_string(), |b| format!("{b:+.1}")),
    );
    above
}

/// What sampling drops costs: the drop hook again with sampling off.
fn sampling_off_row(out: &mut String, a: &Netns, b: &Netns, veth: &Veth) {
    let rows = netmon_run(AttachMethod::TpBtf, NO_SAMPLING, &[None], a, b, veth);
    if let Some(row) = rows[0].iter().find(|row| row.hook == Hook::KfreeSkb) {
        let (above, low, high) = row.above();
        let _ = writeln!(
            out,
            "| tp_btf, drop sampling off | kfree_skb | {} | {:.1} | {:.1} | **{above:+.1}** | \
             {low:+.1} .. {high:+.1} | +15 | - | {} |",
            row.runs,
            median(&row.ours),
            median(&row.floors),
            if above <= 15.0 { "met" } else { "missed" }
        );
    }
}

/// The programs for kernels without `bpf_loop` (before 5.17), forced on this kernel: the same
/// hooks, whose socket hooks keep no memo; then the notes on these rows and on sampling.
fn bounded_walk_rows(out: &mut String, a: &Netns, b: &Netns, veth: &Veth) {
    let rows = netmon_run(AttachMethod::TpBtf, BOUNDED_WALK, &[None], a, b, veth);
    for row in &rows[0] {
        let (above, low, high) = row.above();
        let _ = writeln!(
            out,
            "| tp_btf, bounded_walk | {} | {} | {:.1} | {:.1} | **{above:+.1}** | \
             {low:+.1} .. {high:+.1} | - | - | kernels before 5.17 |",
            row.hook.as_str(),
            row.runs,
            median(&row.ours),
            median(&row.floors),
        );
    }
    out.push_str(
        "\nThe tp_btf, bounded_walk rows load the programs for kernels without `bpf_loop` \
         (`program_variant = \"bounded_walk\"`), which Linux 5.10 to 5.16 run: their slot \
         walk and claim differ only when an identity is new, and their socket hooks count \
         each call in its slot, without the per-CPU memo. They have no target: they are \
         what an older kernel pays.\n",
    );
    out.push_str(
        "\nThe kfree_skb rows above sample drops with the default budget (a burst of 200 \
         samples per CPU, then 100 a second): a fresh agent each round sends about 400 \
         samples of the round's 20,000 drops, each a ring-buffer record with the packet's \
         headers copied (a few hundred ns); the row with sampling off is the drop hook's \
         counting alone.\n\n",
    );
}

/// The targets, in ns above the empty program, by hook.
fn target_ns(hook: Hook) -> f64 {
    match hook {
        Hook::InetSockSetState => 60.0,
        Hook::SockSendLength | Hook::SockRecvLength => 30.0,
        Hook::NetDevXmit
        | Hook::NetifReceiveSkb
        | Hook::KfreeSkb
        | Hook::TcpRetransmitSkb
        | Hook::TcpSendReset
        | Hook::TcpReceiveReset => 15.0,
    }
}

/// Why a method's programs cost what they do beyond the tp_btf ones.
fn method_note(method: AttachMethod) -> &'static str {
    match method {
        AttachMethod::TpBtf => "typed loads, no helper call",
        AttachMethod::RawTp => "untyped arguments: every field is a bpf_probe_read_kernel call",
        _ => "the record is read with bpf_probe_read_kernel as well as every field",
    }
}

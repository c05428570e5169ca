//! The bodies of klt-render's fuzz targets and the invariants they check on every input.
//!
//! Each target is a plain `fn(&[u8])` that panics when an invariant breaks, so libFuzzer
//! (`fuzz/fuzz_targets/*.rs`) and the stable replay driver (`klt-fuzz-replay`) run the same
//! code. [`measured`] wraps a target in the memory bound. The invariants, beyond "no panic":
//!
//! - a render that reports an error has no output documents;
//! - successful output parses back with klt-render's own YAML reader, one document per output
//!   document, and emitted values read back equal;
//! - rendering is deterministic (twice the same input, same bytes) and independent of file order;
//! - no value of a Secret the harness injects appears in any output other than that Secret or
//!   in any diagnostic ([`secrets`]);
//! - peak heap use stays within [`bound`] of the input length.

pub mod alloc;
pub mod secrets;
mod targets;

pub use targets::{gojson, krm_config, krm_wire, model, render, yaml_reader};

/// Bytes of heap per input byte a target may use on top of [`BOUND_BASE`].
///
/// Measured with `klt-fuzz-replay --peaks`: seeds and campaign corpora of 1 KiB or more peak
/// at 20-90 bytes per input byte (parse, JSON copy, render, emit, parse back, twice); the densest
/// synthetic inputs, one-character scalars in a flow sequence, at 150 (a 48-byte `Node` plus a
/// 32-byte JSON value per two input bytes, in vectors that grow by doubling, then emitted and
/// read back). 512 is three times that: no linear input comes near it, while anything
/// super-linear (alias expansion, quadratic copies) crosses it within a few kilobytes.
pub const BOUND_PER_BYTE: usize = 512;
/// Fixed allowance: the lazily parsed CRD schemas are warmed up outside the measurement, so
/// this only covers per-render constant costs (option strings, small maps, output headers).
pub const BOUND_BASE: usize = 16 << 20;

/// The memory bound for an input of `len` bytes.
pub fn bound(len: usize) -> usize {
    BOUND_PER_BYTE
        .saturating_mul(len)
        .saturating_add(BOUND_BASE)
}

/// A target's body: panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay driver and the scripts.
pub const TARGETS: &[(&str, Target)] = &[
    ("yaml_reader", yaml_reader),
    ("gojson", gojson),
    ("model", model),
    ("render", render),
    ("krm_wire", krm_wire),
    ("krm_config", krm_config),
];

/// Runs `target` on `data` under the memory bound; returns the peak heap use in bytes.
pub fn measured(data: &[u8], target: Target) -> usize {
    warm_up();
    alloc::bounded(data.len(), bound(data.len()), || target(data)).1
}

/// Lazily built statics (the CRD schema tables) would be charged to whichever input first
/// needs them; build them once before any measurement.
fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Printing a panic's backtrace loads debug info (megabytes): that must not count
        // against the input, or every assertion would end as a memory-bound abort instead.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            alloc::disarm();
            previous(info);
        }));
        let files = [klt_render::SourceFile {
            path: "warm-up.yaml".into(),
            text: "apiVersion: lifecycle.keptn.sh/v1\nkind: KeptnTaskDefinition\nmetadata:\n  name: w\nspec:\n  deno:\n    inline:\n      code: x\n".into(),
        }];
        let _ = klt_render::render(&files, &klt_render::Options::default());
        let _ = klt_render::lint::lint(&files, &klt_render::Options::default());
    });
}

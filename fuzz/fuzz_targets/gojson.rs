//! libFuzzer entry point of the `gojson` target; the body and its invariants are in
//! [`klt_fuzz_harness::gojson`] so that the stable replay driver runs exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klt_fuzz_harness::measured(data, klt_fuzz_harness::gojson);
});

//! libFuzzer entry point of the `yaml_reader` target; the body and its invariants are in
//! [`klt_fuzz_harness::yaml_reader`] so that the stable replay driver runs exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klt_fuzz_harness::measured(data, klt_fuzz_harness::yaml_reader);
});

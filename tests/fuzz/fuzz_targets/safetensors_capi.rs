//! The C ABI's nowcaster from arbitrary weight-file bytes: plan, build in caller memory, record, nowcast,
//! save and restore, through the `extern "C"` functions a C program calls (nino-core's `WeightFile` parser,
//! its packing of the tensors into f32 or f16, and the ABI's checks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_core::capi::*;
use std::ptr;

/// Largest block the target builds a nowcaster in (the smoke run's memory limit is 256 MB).
const MAX_BLOCK: usize = 16 << 20;

/// Sixteen bytes aligned to `NINO_ALIGN`, the unit of a nowcaster's block.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Chunk([u8; 16]);

fuzz_target!(|data: &[u8]| {
    for storage in [NINO_STORAGE_F32, NINO_STORAGE_F16] {
        // A tiny MLP (4 inputs, 3 hidden, 2 classes) with no built-in spectral table: node features are given.
        let model = NinoModel {
            arch: c"mlp:3".as_ptr(),
            channels: 1,
            height: 2,
            width: 2,
            classes: 2,
            weights: data.as_ptr(),
            weights_len: data.len(),
            model_args: ptr::null(),
            storage,
        };
        let mut plan = NinoPlan::default();
        // SAFETY: every pointer is valid for the call.
        if unsafe { nino_plan_query(&model, &mut plan) } != NINO_OK || plan.total_bytes > MAX_BLOCK {
            continue;
        }
        assert_eq!(plan.params, 23, "mlp:3 on 4 inputs and 2 classes");
        let mut mem = vec![Chunk([0; 16]); plan.total_bytes.div_ceil(16)];
        let features = vec![0.25f32; plan.nodes * plan.node_feature_width];
        let mut nc = ptr::null_mut();
        // SAFETY: every pointer is valid for the length given; `mem` outlives `nc`.
        let built = unsafe {
            nino_nowcaster_init(
                &model,
                features.as_ptr(),
                features.len(),
                mem.as_mut_ptr().cast(),
                plan.total_bytes,
                &mut nc,
            )
        };
        if built != NINO_OK {
            continue;
        }
        let p = plan.params;
        let mut params: Vec<f32> = (0..p).map(|i| i as f32 * 0.01 - 0.1).collect();
        let mut out = vec![0.0f32; p];
        // SAFETY: `nc` is initialised and every buffer holds `p` floats.
        unsafe {
            for step in 0..plan.ctx {
                params.iter_mut().for_each(|x| *x += 0.003 * step as f32);
                assert_eq!(nino_nowcaster_record(nc, params.as_ptr(), p), NINO_OK);
            }
            for k in [1, plan.seq_len] {
                let r = nino_nowcaster_nowcast(nc, k, out.as_mut_ptr(), p);
                // Whether the model fits the arch was settled by the plan: only the values can fail now.
                assert!(r == NINO_OK || r == NINO_E_NON_FINITE, "nowcast: {r}");
                assert!(r != NINO_OK || out.iter().all(|x| x.is_finite()), "a successful nowcast is finite");
            }
            assert_eq!(nino_nowcaster_save(nc, params.as_ptr(), p), NINO_OK);
            assert_eq!(nino_nowcaster_restore(nc, out.as_mut_ptr(), p), NINO_OK);
            assert_eq!(out, params);
        }
    }
});

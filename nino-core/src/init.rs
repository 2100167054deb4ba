//! Initial parameters: PyTorch's default initialisation in distribution, from a seed.

use crate::arch::Arch;
use crate::error::{Error, check_len};
use crate::rng::SplitMix64;

/// Fills `params` (PyTorch order) with every weight and bias of a layer drawn from
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in = in*kh*kw`: PyTorch's default for Conv2d and Linear in
/// distribution (not its bits), deterministic in `seed`.
pub fn init_params(arch: &Arch, seed: u64, params: &mut [f32]) -> Result<(), Error> {
    check_len("params", params.len(), arch.param_count())?;
    let mut rng = SplitMix64::new(seed);
    for l in arch.layers() {
        let bound = 1.0 / libm::sqrtf((l.n_in * l.taps()) as f32);
        for r in [l.weight_offset..l.weight_offset + l.weight_len(), l.bias_offset..l.bias_offset + l.n_out] {
            for v in &mut params[r] {
                *v = (2.0 * rng.unit() - 1.0) * bound;
            }
        }
    }
    Ok(())
}

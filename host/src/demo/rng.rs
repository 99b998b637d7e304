//! Seeded pseudo-random numbers for the simulator's noise: xorshift64* (Vigna, 2016).
//!
//! Small, fast and good enough to make load curves look alive; not for anything secret.
//! The same seed gives the same site, which keeps the tests reproducible.

/// A xorshift64* generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`. The seed is mixed first (splitmix64), so small or similar
    /// seeds still give unrelated sequences, and the state is never zero.
    pub(crate) fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`.
    pub(crate) fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Slowly wandering noise (a discrete Ornstein–Uhlenbeck / AR(1) process): keeps its standard
/// deviation `sigma` and forgets its past over `tau_s` seconds, whatever the step length.
/// Real loads and clouds drift; white noise at one-second resolution would look like static.
#[derive(Debug, Clone)]
pub(crate) struct Wander {
    value: f64,
    sigma: f64,
    tau_s: f64,
}

impl Wander {
    pub(crate) fn new(sigma: f64, tau_s: f64) -> Wander {
        Wander {
            value: 0.0,
            sigma,
            tau_s,
        }
    }

    /// Advances by `dt_s` seconds; returns the new value.
    pub(crate) fn step(&mut self, dt_s: f64, rng: &mut Rng) -> f64 {
        let keep = (-dt_s / self.tau_s).exp();
        self.value = keep * self.value + self.sigma * (1.0 - keep * keep).sqrt() * rng.normal();
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_sane_ranges() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let n = 20_000;
        let mut sum = 0.0;
        let mut sum_sq = 0.0;
        for _ in 0..n {
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            let z = a.normal();
            assert!(z.is_finite());
            sum += z;
            sum_sq += z * z;
        }
        let mean = sum / f64::from(n);
        let var = sum_sq / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }

    #[test]
    fn wander_keeps_its_spread() {
        let mut rng = Rng::new(1);
        let mut w = Wander::new(0.1, 60.0);
        let values: Vec<f64> = (0..50_000).map(|_| w.step(1.0, &mut rng)).collect();
        let rms = (values.iter().map(|v| v * v).sum::<f64>() / values.len() as f64).sqrt();
        assert!((0.07..0.13).contains(&rms), "rms {rms}");
        // Neighbours are close: it drifts rather than jumps.
        let step_rms = (values
            .windows(2)
            .map(|p| (p[1] - p[0]).powi(2))
            .sum::<f64>()
            / values.len() as f64)
            .sqrt();
        assert!(step_rms < 0.03, "step rms {step_rms}");
    }
}

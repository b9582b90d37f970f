//! `explain`: the normal level follows another field (a load), as a
//! least-squares line, trusted only at the loads it has learned.

use super::Z_NOW;
use serde::{Deserialize, Serialize};

/// The least-squares line value = a + b * explaining, and where the
/// explaining field is now.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Line {
    /// Weighted means of the explaining field, its square, and its product
    /// with the value.
    pub ex: f64,
    pub exx: f64,
    pub exy: f64,
    /// The explaining field's own reading noise (half the weighted mean
    /// squared difference of successive readings), and its last reading.
    pub ez_noise: f64,
    pub last_z: f64,
    /// The explaining field now: a short average of its last readings, so
    /// a change of load shows within a few readings and noise does not.
    pub z_now: f64,
    /// Since when the explaining field has been at a level the line was
    /// not learned at, and that level.
    pub new_level: Option<(i64, f64)>,
}

impl Line {
    /// The explaining field's learned variance, and the part of it that
    /// is reading noise rather than changes of load.
    pub fn spread(&self) -> (f64, f64) {
        let var = (self.exx - self.ex * self.ex).max(0.0);
        (var, self.ez_noise.min(var))
    }

    /// The slope, given the value's weighted mean `ey`.
    pub fn slope(&self, ey: f64) -> f64 {
        let (var, noise) = self.spread();
        // Noise in the explaining readings flattens a least-squares line
        // (regression dilution): divide by the variance of the load itself,
        // though by no less than half that of the readings while the load
        // has barely varied.
        let load_var = (var - noise).max(var / 2.0);
        match load_var > 1e-12 {
            true => (self.exy - self.ex * ey) / load_var,
            false => 0.0,
        }
    }

    /// Follows the explaining field with reading `z` at `t`, and says
    /// whether the line was learned near its level now: within 3 standard
    /// deviations of the loads seen, widened by what noise remains in the
    /// average. With a single load seen, the line is flat and holds only
    /// there.
    pub fn follow_load(&mut self, z: f64, t: i64) -> bool {
        self.z_now += Z_NOW * (z - self.z_now);
        let (var, noise) = self.spread();
        let noise_now = (noise * Z_NOW / (2.0 - Z_NOW)).sqrt();
        let known = (self.z_now - self.ex).abs() <= 3.0 * ((var - noise).sqrt() + noise_now);
        // Once at a level never seen, the clock runs while the field stays
        // there (within its reading noise), even if noise takes it back into
        // the known range a moment; a surge that moves it further restarts it.
        let z_now = self.z_now;
        let stays = |&(_, level): &(i64, f64)| (z_now - level).abs() <= 3.0 * noise.sqrt();
        self.new_level = match self.new_level.filter(stays) {
            None if !known => Some((t, self.z_now)),
            other => other,
        };
        known
    }

    /// How long the explaining field has been at a level never seen.
    pub fn new_level_for(&self, t: i64) -> i64 {
        self.new_level.map_or(0, |(since, _)| t - since)
    }

    /// Learns value `x` at explaining value `z` with weight `w`; `learned`
    /// readings came before.
    pub fn learn(&mut self, x: f64, z: f64, w: f64, learned: u32) {
        if learned > 0 {
            // A change of load is one big step among many small ones: cap
            // its share once the noise is known.
            let step = (z - self.last_z).powi(2) / 2.0;
            let cap = if learned > 10 {
                9.0 * self.ez_noise
            } else {
                step
            };
            self.ez_noise += w * (step.min(cap) - self.ez_noise);
        }
        self.last_z = z;
        self.ex += w * (z - self.ex);
        self.exx += w * (z * z - self.exx);
        self.exy += w * (z * x - self.exy);
    }
}

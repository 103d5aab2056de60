//! Four-vectors, exact boosts and rotations: the kinematics every other stage is written in.
//!
//! Metric (+,−,−,−), GeV, c = 1. Boosts are parametrised by the four-momentum of the moving system
//! and its known mass (γ = E/M, γβ = p/M) rather than by a velocity: 1 − β² loses about 12 digits for
//! a 1 TeV tau, the four-momentum form loses none, so four-momentum is conserved to ~1e-12 after the
//! two boosts (tau rest frame → boson frame → lab).

use std::ops::{Add, Sub};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct P4 {
    pub e: f64,
    pub px: f64,
    pub py: f64,
    pub pz: f64,
}

impl P4 {
    pub const fn new(e: f64, px: f64, py: f64, pz: f64) -> Self {
        Self { e, px, py, pz }
    }

    /// A particle of mass `m` at rest.
    pub const fn at_rest(m: f64) -> Self {
        Self::new(m, 0.0, 0.0, 0.0)
    }

    /// Mass `m` with three-momentum `p` (energy on shell).
    pub fn from_p3_m(p: [f64; 3], m: f64) -> Self {
        Self::new((p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + m * m).sqrt(), p[0], p[1], p[2])
    }

    pub fn from_pt_eta_phi_m(pt: f64, eta: f64, phi: f64, m: f64) -> Self {
        Self::from_p3_m([pt * phi.cos(), pt * phi.sin(), pt * eta.sinh()], m)
    }

    pub fn p3(&self) -> [f64; 3] {
        [self.px, self.py, self.pz]
    }

    pub fn p2(&self) -> f64 {
        self.px * self.px + self.py * self.py + self.pz * self.pz
    }

    pub fn p(&self) -> f64 {
        self.p2().sqrt()
    }

    pub fn dot(&self, o: &P4) -> f64 {
        self.e * o.e - self.px * o.px - self.py * o.py - self.pz * o.pz
    }

    pub fn mass2(&self) -> f64 {
        self.dot(self)
    }

    /// Invariant mass; a slightly negative m² from rounding gives 0.
    pub fn mass(&self) -> f64 {
        self.mass2().max(0.0).sqrt()
    }

    pub fn pt(&self) -> f64 {
        // Not hypot: its overflow guard costs ~10% of generation, and GeV never overflow.
        (self.px * self.px + self.py * self.py).sqrt()
    }

    /// Pseudorapidity; ±1e3-ish for a particle along the beam rather than ±∞.
    pub fn eta(&self) -> f64 {
        let pt = self.pt();
        if pt == 0.0 {
            return if self.pz >= 0.0 { 1e3 } else { -1e3 };
        }
        (self.pz / pt).asinh()
    }

    pub fn phi(&self) -> f64 {
        self.py.atan2(self.px)
    }

    pub fn scale(&self, k: f64) -> P4 {
        P4::new(self.e * k, self.px * k, self.py * k, self.pz * k)
    }

    /// This vector, given in the rest frame of a system `frame` of mass `m`, expressed in the frame
    /// where that system has four-momentum `frame`. (Standard boost with γ = E/m, γβ⃗ = p⃗/m.)
    pub fn boost_from_rest_of(&self, frame: &P4, m: f64) -> P4 {
        let bp = (frame.px * self.px + frame.py * self.py + frame.pz * self.pz) / m;
        let e = (frame.e * self.e) / m + bp;
        let k = bp / (frame.e + m) + self.e / m;
        P4::new(e, self.px + k * frame.px, self.py + k * frame.py, self.pz + k * frame.pz)
    }

    /// The inverse: this lab vector seen from the rest frame of `frame` (mass `m`).
    pub fn boost_to_rest_of(&self, frame: &P4, m: f64) -> P4 {
        let back = P4::new(frame.e, -frame.px, -frame.py, -frame.pz);
        self.boost_from_rest_of(&back, m)
    }

    pub fn rotated(&self, r: &Rot) -> P4 {
        let [x, y, z] = r.apply(self.p3());
        P4::new(self.e, x, y, z)
    }
}

impl Add for P4 {
    type Output = P4;
    fn add(self, o: P4) -> P4 {
        P4::new(self.e + o.e, self.px + o.px, self.py + o.py, self.pz + o.pz)
    }
}

impl Sub for P4 {
    type Output = P4;
    fn sub(self, o: P4) -> P4 {
        P4::new(self.e - o.e, self.px - o.px, self.py - o.py, self.pz - o.pz)
    }
}

/// A 3×3 rotation matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rot(pub [[f64; 3]; 3]);

impl Rot {
    pub const IDENTITY: Rot = Rot([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);

    pub fn apply(&self, v: [f64; 3]) -> [f64; 3] {
        let m = &self.0;
        [
            m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
            m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
        ]
    }

    pub fn then(&self, after: &Rot) -> Rot {
        let (a, b) = (&after.0, &self.0);
        let mut m = [[0.0; 3]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = (0..3).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        Rot(m)
    }

    pub fn transpose(&self) -> Rot {
        let m = &self.0;
        Rot([[m[0][0], m[1][0], m[2][0]], [m[0][1], m[1][1], m[2][1]], [m[0][2], m[1][2], m[2][2]]])
    }

    /// Rotation about z by `psi`.
    pub fn about_z(psi: f64) -> Rot {
        let (s, c) = psi.sin_cos();
        Rot([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    }

    /// R_z(φ)·R_y(θ): takes ẑ to the unit vector `n` (polar angle θ, azimuth φ).
    pub fn z_to(n: [f64; 3]) -> Rot {
        let ct = n[2];
        let st = (n[0] * n[0] + n[1] * n[1]).sqrt();
        let (cp, sp) = if st > 0.0 { (n[0] / st, n[1] / st) } else { (1.0, 0.0) };
        Rot([[ct * cp, -sp, st * cp], [ct * sp, cp, st * sp], [-st, 0.0, ct]])
    }
}

pub fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

/// An isotropic unit vector.
pub fn random_direction(rng: &mut crate::rng::Rng) -> [f64; 3] {
    let c = rng.range(-1.0, 1.0);
    let s = (1.0 - c * c).max(0.0).sqrt();
    let (sp, cp) = (std::f64::consts::TAU * rng.uniform()).sin_cos();
    [s * cp, s * sp, c]
}

/// Momentum of either daughter in the rest frame of a parent of mass `m` decaying to `m1` + `m2`
/// (0 below threshold).
pub fn two_body_p(m: f64, m1: f64, m2: f64) -> f64 {
    let a = (m * m - (m1 + m2) * (m1 + m2)) * (m * m - (m1 - m2) * (m1 - m2));
    if a <= 0.0 {
        0.0
    } else {
        a.sqrt() / (2.0 * m)
    }
}

/// ΔR between two directions, φ wrapped into (−π, π].
pub fn delta_r(eta1: f64, phi1: f64, eta2: f64, phi2: f64) -> f64 {
    let mut dphi = (phi1 - phi2).abs();
    if dphi > std::f64::consts::PI {
        dphi = std::f64::consts::TAU - dphi;
    }
    (eta1 - eta2).hypot(dphi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boost_round_trips_and_preserves_mass() {
        let frame = P4::from_p3_m([300.0, -40.0, 900.0], 1.77686);
        let v = P4::from_p3_m([0.3, 0.1, -0.5], 0.13957);
        let lab = v.boost_from_rest_of(&frame, 1.77686);
        assert!((lab.mass() - 0.13957).abs() < 1e-9);
        let back = lab.boost_to_rest_of(&frame, 1.77686);
        for (a, b) in [(back.e, v.e), (back.px, v.px), (back.py, v.py), (back.pz, v.pz)] {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        // The frame's own rest vector goes to the frame.
        let f = P4::at_rest(1.77686).boost_from_rest_of(&frame, 1.77686);
        assert!((f.e - frame.e).abs() < 1e-9 && (f.pz - frame.pz).abs() < 1e-9);
    }

    #[test]
    fn z_to_takes_z_to_n() {
        for n in [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], unit([1.0, -2.0, 0.5])] {
            let r = Rot::z_to(n).apply([0.0, 0.0, 1.0]);
            for i in 0..3 {
                assert!((r[i] - n[i]).abs() < 1e-12);
            }
        }
    }
}

//! The V−A matrix element of τ⁻ → ν_τ + hadrons for a polarized tau, as a polarimeter vector.
//!
//! For a hadronic current J^μ the amplitude is M(λ) ∝ ū(k) γ_μ (1 − γ⁵) u(p, λ) J^μ. In the tau rest
//! frame, in the chiral (Weyl) representation of Peskin & Schroeder (§3.3), u(p, λ) = √m (ξ_λ, ξ_λ),
//! the massless neutrino keeps only its left-handed part u_L(k) = √(2E) ξ₋(k̂) with (k̂·σ⃗) ξ₋ = −ξ₋, and
//! γ^μ (1 − γ⁵) turns the spinor algebra into 2×2 matrices:
//!
//!   M(λ) = 2 √(2 E m) · ξ₋(k̂)† A ξ_λ,     A = J⁰ + J⃗·σ⃗   (contravariant J in the tau rest frame).
//!
//! For a tau whose spin density matrix is ρ = (1 + P ŝ·σ⃗)/2 the rate is therefore
//!
//!   |M|² = 8 E m · χ† ρ χ = 4 E m |χ|² (1 + P ŝ·h⃗),   χ = A† ξ₋(k̂),   h⃗ = χ†σ⃗χ / |χ|²,
//!
//! exact for any complex current, interference included (this is the polarimeter vector of
//! Kühn & Wagner 1984 / TAUOLA, Jadach, Kühn, Wąs 1991). Because the final state is fully specified,
//! χ is a pure spinor and |h⃗| = 1. Check: for τ → πν, J = q_π gives h⃗ = q̂_π and 1 + P cos θ
//! (the pion follows the tau spin, as angular momentum conservation with a left-handed ν demands).

use super::fourvec::P4;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub const fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    pub fn conj(self) -> C {
        C::new(self.re, -self.im)
    }
    pub fn norm2(self) -> f64 {
        self.re * self.re + self.im * self.im
    }
    pub fn mul(self, o: C) -> C {
        C::new(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re)
    }
    pub fn add(self, o: C) -> C {
        C::new(self.re + o.re, self.im + o.im)
    }
    pub fn scale(self, k: f64) -> C {
        C::new(self.re * k, self.im * k)
    }
    pub fn inv(self) -> C {
        let n = self.norm2();
        C::new(self.re / n, -self.im / n)
    }
}

/// A complex four-vector current (contravariant components).
pub type Current = [C; 4];

/// `c · v` for a complex coefficient and a real four-vector.
pub fn times(c: C, v: &P4) -> Current {
    [c.scale(v.e), c.scale(v.px), c.scale(v.py), c.scale(v.pz)]
}

pub fn add(a: &Current, b: &Current) -> Current {
    [a[0].add(b[0]), a[1].add(b[1]), a[2].add(b[2]), a[3].add(b[3])]
}

/// The result for one final state: the spin-summed weight (∝ unpolarized |M|²) and h⃗.
#[derive(Clone, Copy, Debug)]
pub struct Polarimeter {
    pub weight: f64,
    pub h: [f64; 3],
}

/// Evaluates the formula above for the neutrino momentum `k` and the current `j`, both in the tau
/// rest frame. The weight omits the constant 8m.
pub fn polarimeter(k: &P4, j: &Current) -> Polarimeter {
    // ξ₋(k̂) up to normalisation: the projector (1 − k̂·σ⃗)/2 applied to whichever basis spinor it
    // does not annihilate; the division by |ξ|² below restores the normalisation.
    let kn = k.p();
    let (kx, ky, kz) = (k.px / kn, k.py / kn, k.pz / kn);
    let xi = if kz < 0.0 {
        [C::new(0.5 * (1.0 - kz), 0.0), C::new(-0.5 * kx, -0.5 * ky)]
    } else {
        [C::new(-0.5 * kx, 0.5 * ky), C::new(0.5 * (1.0 + kz), 0.0)]
    };
    let xi_norm2 = xi[0].norm2() + xi[1].norm2();
    // A = [[J0 + J3, J1 − iJ2], [J1 + iJ2, J0 − J3]];  A† = conjugate transpose.
    let i = C::new(0.0, 1.0);
    let a00 = j[0].add(j[3]);
    let a01 = j[1].add(i.mul(j[2]).scale(-1.0));
    let a10 = j[1].add(i.mul(j[2]));
    let a11 = j[0].add(j[3].scale(-1.0));
    let chi0 = a00.conj().mul(xi[0]).add(a10.conj().mul(xi[1]));
    let chi1 = a01.conj().mul(xi[0]).add(a11.conj().mul(xi[1]));
    let n = chi0.norm2() + chi1.norm2();
    let c01 = chi0.conj().mul(chi1);
    let h = if n > 0.0 {
        [2.0 * c01.re / n, 2.0 * c01.im / n, (chi0.norm2() - chi1.norm2()) / n]
    } else {
        [0.0, 0.0, 1.0]
    };
    Polarimeter { weight: k.e * n / xi_norm2, h }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tau::generator::fourvec::two_body_p;

    #[test]
    fn pion_polarimeter_is_the_pion_direction() {
        let (mt, mpi) = (1.77686, 0.13957);
        let p = two_body_p(mt, mpi, 0.0);
        for dir in [[0.0, 0.0, 1.0], [0.6, 0.0, -0.8], [0.0, -1.0, 0.0]] {
            let q = P4::from_p3_m([p * dir[0], p * dir[1], p * dir[2]], mpi);
            let k = P4::new(p, -q.px, -q.py, -q.pz);
            let pol = polarimeter(&k, &times(C::new(1.0, 0.0), &q));
            for i in 0..3 {
                assert!((pol.h[i] - dir[i]).abs() < 1e-12, "{:?} vs {:?}", pol.h, dir);
            }
            // Spin-summed |M|²/8m = E_ν (E_π + |q|)² · … : independent of direction.
            let want = p * (q.e + p) * (q.e + p);
            assert!((pol.weight - want).abs() < 1e-12 * want);
        }
    }

    #[test]
    fn weight_matches_the_covariant_trace_for_real_currents() {
        // For real J the spin-summed |M|² is 2 Tr[k̸ γ^μ p̸ γ^ν] J_μ J_ν = 8[2(k·J)(p·J) − (k·p) J²]
        // (weight = that / 8m); for spin s it is 4[2(k·J)(n·J) − (k·n) J²] with n = p − m s, which
        // must equal 4m · weight · (1 + ŝ·h⃗).
        let m = 1.77686;
        let k = P4::new(0.5, 0.3, -0.4, 0.0);
        let j = P4::new(0.2, -0.7, 0.1, 0.9);
        let p = P4::at_rest(m);
        let want = (2.0 * k.dot(&j) * p.dot(&j) - k.dot(&p) * j.mass2()) / m;
        let pol = polarimeter(&k, &times(C::new(1.0, 0.0), &j));
        assert!((pol.weight - want).abs() < 1e-12, "{} vs {want}", pol.weight);
        // Spin along ±z: s = (0, 0, 0, ±1).
        for sign in [1.0, -1.0] {
            let n = P4::new(m, 0.0, 0.0, -m * sign);
            let w = (2.0 * k.dot(&j) * n.dot(&j) - k.dot(&n) * j.mass2()) / m;
            let got = pol.weight * (1.0 + sign * pol.h[2]);
            assert!((got - w).abs() < 1e-12, "{got} vs {w}");
        }
    }
}

//! The tau dataset format: JSON Lines, one reconstructed tau per line (schema in `data/README.md`).
//!
//! ```text
//! {"particles":[{"pt":31.2,"eta":0.41,"phi":-2.1,"e":33.9,"charge":-1,"kind":"pi"},…],
//!  "tau_pt":52.7,"tau_eta":0.43,"tau_phi":-2.09,"vis_pt":40.1,"vis_mass":0.77,
//!  "decay_mode":"1p1n","process":"h"}
//! ```
//! GeV and radians. `kind` ∈ pi, gamma, e, mu; `decay_mode` is the true generated mode; `vis_pt` and
//! `vis_mass` are those of the sum of the listed particles; `tau_pt` is the true tau pT. The reader
//! accepts any producer of this schema and ignores unknown fields; the writer is hand-written (about
//! 5× faster than serde_json here) and rounds to 5 decimals (10 keV, 1e-5 rad).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// The true decay mode: prongs (charged hadrons) and π⁰s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DecayMode {
    /// π ν (and K ν)
    #[serde(rename = "1p0n")]
    OneProng0Pi0,
    /// π π⁰ ν (ρ)
    #[serde(rename = "1p1n")]
    OneProng1Pi0,
    /// π 2π⁰ ν (a1)
    #[serde(rename = "1p2n")]
    OneProng2Pi0,
    /// 3π ν (a1)
    #[serde(rename = "3p0n")]
    ThreeProng0Pi0,
    /// 3π π⁰ ν
    #[serde(rename = "3p1n")]
    ThreeProng1Pi0,
    /// e ν ν
    #[serde(rename = "e")]
    Electron,
    /// μ ν ν
    #[serde(rename = "mu")]
    Muon,
    /// everything else
    #[serde(rename = "other")]
    Other,
}

impl DecayMode {
    pub const ALL: [DecayMode; 8] = [
        DecayMode::OneProng0Pi0,
        DecayMode::OneProng1Pi0,
        DecayMode::OneProng2Pi0,
        DecayMode::ThreeProng0Pi0,
        DecayMode::ThreeProng1Pi0,
        DecayMode::Electron,
        DecayMode::Muon,
        DecayMode::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecayMode::OneProng0Pi0 => "1p0n",
            DecayMode::OneProng1Pi0 => "1p1n",
            DecayMode::OneProng2Pi0 => "1p2n",
            DecayMode::ThreeProng0Pi0 => "3p0n",
            DecayMode::ThreeProng1Pi0 => "3p1n",
            DecayMode::Electron => "e",
            DecayMode::Muon => "mu",
            DecayMode::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<DecayMode> {
        DecayMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn is_leptonic(self) -> bool {
        matches!(self, DecayMode::Electron | DecayMode::Muon)
    }

    /// Position in `ALL` (for per-mode tables).
    pub fn index(self) -> usize {
        DecayMode::ALL.iter().position(|&m| m == self).unwrap()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A charged hadron track (π±; also K±).
    Pi,
    /// A photon cluster.
    Gamma,
    E,
    Mu,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pi => "pi",
            Kind::Gamma => "gamma",
            Kind::E => "e",
            Kind::Mu => "mu",
        }
    }
}

/// One reconstructed visible particle.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Particle {
    pub pt: f64,
    pub eta: f64,
    pub phi: f64,
    pub e: f64,
    pub charge: i32,
    pub kind: Kind,
}

/// One tau: its visible particles (ordered by pT, hardest first), the truth and the visible sums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tau {
    pub particles: Vec<Particle>,
    pub tau_pt: f64,
    pub tau_eta: f64,
    pub tau_phi: f64,
    pub vis_pt: f64,
    pub vis_mass: f64,
    pub decay_mode: DecayMode,
    pub process: String,
}

impl Tau {
    /// The regression target r = tau_pt / vis_pt.
    pub fn ratio(&self) -> f64 {
        self.tau_pt / self.vis_pt
    }

    /// Why this tau is not usable, if it is not: no particles, or a non-finite number.
    pub fn check(&self) -> Result<(), String> {
        if self.particles.is_empty() {
            return Err("tau has no particles".into());
        }
        let fields = [("tau_pt", self.tau_pt), ("tau_eta", self.tau_eta), ("tau_phi", self.tau_phi), ("vis_pt", self.vis_pt), ("vis_mass", self.vis_mass)];
        for (name, v) in fields {
            if !v.is_finite() {
                return Err(format!("{name} is not a finite number"));
            }
        }
        for (i, p) in self.particles.iter().enumerate() {
            for (name, v) in [("pt", p.pt), ("eta", p.eta), ("phi", p.phi), ("e", p.e)] {
                if !v.is_finite() {
                    return Err(format!("particles[{i}].{name} is not a finite number"));
                }
            }
        }
        if self.vis_pt <= 0.0 {
            return Err("vis_pt must be positive".into());
        }
        Ok(())
    }
}

/// Appends one tau as a JSON line (with its newline).
pub fn write_tau(out: &mut Vec<u8>, t: &Tau) {
    out.extend_from_slice(b"{\"particles\":[");
    for (i, p) in t.particles.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(
            out,
            "{{\"pt\":{:.5},\"eta\":{:.5},\"phi\":{:.5},\"e\":{:.5},\"charge\":{},\"kind\":\"{}\"}}",
            p.pt,
            p.eta,
            p.phi,
            p.e,
            p.charge,
            p.kind.as_str()
        );
    }
    let _ = writeln!(
        out,
        "],\"tau_pt\":{:.5},\"tau_eta\":{:.5},\"tau_phi\":{:.5},\"vis_pt\":{:.5},\"vis_mass\":{:.5},\"decay_mode\":\"{}\",\"process\":{}}}",
        t.tau_pt,
        t.tau_eta,
        t.tau_phi,
        t.vis_pt,
        t.vis_mass,
        t.decay_mode.as_str(),
        JsonStr(&t.process)
    );
}

/// A string as a JSON string literal (quotes, backslashes and control characters escaped).
struct JsonStr<'a>(&'a str);

impl std::fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// What to do with a bad line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Report it on stderr, count it, go on.
    Skip,
    /// Fail with its file:line.
    Stop,
}

/// What `read_jsonl` saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadReport {
    /// Non-blank lines.
    pub lines: usize,
    pub taus: usize,
    pub skipped: usize,
    /// `file:line: problem` for the first few skipped lines.
    pub errors: Vec<String>,
}

const KEEP_ERRORS: usize = 20;

/// Reads a tau JSONL file. A line that is not JSON, lacks a required field, holds a non-finite
/// number or has no particles is an error `file:line: …`: with `OnError::Stop` the read fails, with
/// `OnError::Skip` the line is counted in `skipped` (and the first 20 kept in `errors`). Blank lines
/// are ignored, unknown fields too.
pub fn read_jsonl(path: &Path, on_error: OnError) -> Result<(Vec<Tau>, ReadReport)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut taus = Vec::new();
    let mut report = ReadReport::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read line", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        match parse_line(&line) {
            Ok(t) => taus.push(t),
            Err(msg) => {
                let msg = format!("{}:{}: {msg}", path.display(), i + 1);
                if on_error == OnError::Stop {
                    bail!("{msg} (use --on-error skip to skip bad lines)");
                }
                report.skipped += 1;
                if report.errors.len() < KEEP_ERRORS {
                    report.errors.push(msg);
                }
            }
        }
    }
    report.taus = taus.len();
    Ok((taus, report))
}

fn parse_line(line: &str) -> Result<Tau, String> {
    let t: Tau = serde_json::from_str(line).map_err(|e| {
        // serde_json appends "at line 1 column N"; the line is ours, the column is worth keeping.
        let msg = e.to_string();
        let msg = msg.rsplit_once(" at line ").map(|(m, _)| m.to_string()).unwrap_or(msg);
        format!("column {}: {msg}", e.column())
    })?;
    t.check()?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_line_reads_back() {
        let t = Tau {
            particles: vec![Particle { pt: 30.5, eta: -0.25, phi: 1.5, e: 31.6, charge: -1, kind: Kind::Pi }],
            tau_pt: 50.0,
            tau_eta: -0.2,
            tau_phi: 1.49,
            vis_pt: 30.5,
            vis_mass: 0.13957,
            decay_mode: DecayMode::OneProng0Pi0,
            process: "h".into(),
        };
        let mut buf = Vec::new();
        write_tau(&mut buf, &t);
        let back = parse_line(std::str::from_utf8(&buf).unwrap().trim_end()).unwrap();
        assert_eq!(back, t);
    }
}

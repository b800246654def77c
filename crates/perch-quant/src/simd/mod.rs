//! Run-time choice of the SIMD level the kernels use.
//!
//! Every kernel exists as a portable scalar reference; on x86-64 there are also AVX2+FMA
//! versions and AVX-512 versions (F, BW, DQ, VL and VNNI; BF16 instructions are used when
//! the CPU also has them). The level is detected once, on first use, from CPUID; the
//! environment variable `PERCH_SIMD=scalar|avx2|avx512` forces a level for tests and
//! comparisons. Asking for a level the CPU lacks never runs unsupported instructions: the
//! best level the CPU does have below the one asked for is used, and a warning is logged.
//!
//! Kernels take the level explicitly (`*_at(level, ...)` entry points) so tests can hold each
//! SIMD version to its scalar reference on any machine that has it.

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set level for the kernels, from the most portable to the widest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable Rust, on every architecture: the reference every other level is tested
    /// against.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C (Haswell and later, Zen).
    Avx2,
    /// x86-64 AVX-512 F/BW/DQ/VL with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later), on top
    /// of everything [`SimdLevel::Avx2`] needs.
    Avx512,
}

/// Every level, from the most portable to the widest.
pub const ALL_LEVELS: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];

/// The environment variable that forces a level.
pub const ENV_VAR: &str = "PERCH_SIMD";

/// A `PERCH_SIMD` value that names no level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown SIMD level {0:?}: expected one of scalar, avx2, avx512")]
pub struct UnknownSimdLevel(pub String);

impl SimdLevel {
    /// The level's name as `PERCH_SIMD` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Parses a `PERCH_SIMD` value (case-insensitive, surrounding spaces ignored).
    pub fn parse(s: &str) -> Result<SimdLevel, UnknownSimdLevel> {
        let t = s.trim();
        ALL_LEVELS
            .iter()
            .copied()
            .find(|l| l.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownSimdLevel(s.to_string()))
    }

    /// Whether this CPU can run the level's kernels.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2 => cpu().avx2,
            SimdLevel::Avx512 => cpu().avx512,
        }
    }

    /// The widest level this CPU supports.
    pub fn detected() -> SimdLevel {
        ALL_LEVELS
            .iter()
            .rev()
            .copied()
            .find(|l| l.is_supported())
            .unwrap_or(SimdLevel::Scalar)
    }

    /// The levels this CPU supports, from scalar up: what a test compares against scalar.
    pub fn supported() -> impl Iterator<Item = SimdLevel> {
        ALL_LEVELS.into_iter().filter(|l| l.is_supported())
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// CPU features the kernels care about, read once.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuFeatures {
    /// AVX2 + FMA + F16C.
    pub avx2: bool,
    /// AVX-512 F/BW/DQ/VL/VNNI (and everything in `avx2`).
    pub avx512: bool,
    /// AVX-512 BF16 (`vdpbf16ps`), on top of `avx512`.
    pub avx512_bf16: bool,
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuFeatures {
    let avx2 = std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c");
    let avx512 = avx2
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni");
    let avx512_bf16 = avx512 && std::arch::is_x86_feature_detected!("avx512bf16");
    CpuFeatures {
        avx2,
        avx512,
        avx512_bf16,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> CpuFeatures {
    CpuFeatures::default()
}

pub(crate) fn cpu() -> &'static CpuFeatures {
    static CPU: OnceLock<CpuFeatures> = OnceLock::new();
    CPU.get_or_init(detect)
}

/// How a requested level was resolved against the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The level the kernels will use.
    pub level: SimdLevel,
    /// Why it differs from what was asked, if it does.
    pub warning: Option<String>,
}

/// Resolves a `PERCH_SIMD` value (or its absence) against a CPU whose widest level is
/// `detected`. Pure, so the policy is testable on any machine.
pub fn resolve(requested: Option<&str>, detected: SimdLevel) -> Resolved {
    let Some(raw) = requested.filter(|s| !s.trim().is_empty()) else {
        return Resolved {
            level: detected,
            warning: None,
        };
    };
    match SimdLevel::parse(raw) {
        Err(e) => Resolved {
            level: detected,
            warning: Some(format!(
                "{ENV_VAR}: {e}; using the detected level {detected}"
            )),
        },
        Ok(want) if want <= detected => Resolved {
            level: want,
            warning: None,
        },
        Ok(want) => Resolved {
            level: detected,
            warning: Some(format!(
                "{ENV_VAR}={want} asked for, but this CPU lacks it; using {detected}"
            )),
        },
    }
}

/// The level the kernels use: detected once, overridden by `PERCH_SIMD`.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let env = std::env::var(ENV_VAR).ok();
        let r = resolve(env.as_deref(), SimdLevel::detected());
        if let Some(w) = &r.warning {
            tracing::warn!("{w}");
        }
        tracing::debug!(level = %r.level, "perch-quant SIMD level");
        r.level
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(SimdLevel::parse("scalar"), Ok(SimdLevel::Scalar));
        assert_eq!(SimdLevel::parse(" AVX2 "), Ok(SimdLevel::Avx2));
        assert_eq!(SimdLevel::parse("avx512"), Ok(SimdLevel::Avx512));
        assert!(SimdLevel::parse("neon").is_err());
    }

    #[test]
    fn resolve_policy() {
        use SimdLevel::*;
        assert_eq!(resolve(None, Avx2).level, Avx2);
        assert_eq!(resolve(Some(""), Avx512).level, Avx512);
        let r = resolve(Some("scalar"), Avx512);
        assert_eq!((r.level, r.warning), (Scalar, None));
        // Asking for more than the CPU has falls back with a warning.
        let r = resolve(Some("avx512"), Avx2);
        assert_eq!(r.level, Avx2);
        assert!(r.warning.unwrap().contains("lacks"));
        // Garbage falls back to the detected level with a warning.
        let r = resolve(Some("sse9"), Avx2);
        assert_eq!(r.level, Avx2);
        assert!(r.warning.unwrap().contains("sse9"));
    }

    #[test]
    fn detected_level_is_supported_and_scalar_always_is() {
        assert!(SimdLevel::Scalar.is_supported());
        assert!(SimdLevel::detected().is_supported());
        assert!(simd_level().is_supported());
        assert_eq!(SimdLevel::supported().next(), Some(SimdLevel::Scalar));
    }
}

//! ONNX Runtime through `ort` in load-dynamic mode: finding and loading the shared library
//! once, sessions with a thread count and graph optimization level, and saving ONNX
//! Runtime's optimized graph.
//!
//! The library is, in order: `$ORT_DYLIB_PATH`; the one `cargo xtask fixtures` extracts
//! from the `onnxruntime==1.32.0` wheel (`<cache>/onnxruntime-1.32.0/onnxruntime/capi/`,
//! the cache being `$PERCH_FIXTURES_DIR` or the workspace's `models/cache`). A missing or
//! unloadable library is [`OnnxError::RuntimeLibrary`], returned before anything runs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use crate::error::{OnnxError, Result};

/// The environment variable naming the ONNX Runtime shared library.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The library's path inside the fixture cache.
pub const CACHED_LIBRARY: &str = "onnxruntime-1.32.0/onnxruntime/capi/libonnxruntime.so.1.32.0";

/// Where perch looks for the library when `ORT_DYLIB_PATH` is unset, in order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os("PERCH_FIXTURES_DIR").filter(|d| !d.is_empty()) {
        roots.push(PathBuf::from(dir));
    }
    // The workspace this binary was built from (crates/perch-onnx is two levels down).
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/cache"));
    roots.into_iter().map(|r| r.join(CACHED_LIBRARY)).collect()
}

/// The ONNX Runtime library perch would load.
///
/// # Errors
/// [`OnnxError::RuntimeLibrary`] when `ORT_DYLIB_PATH` names no file, or it is unset and no
/// candidate exists.
pub fn library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(DYLIB_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(OnnxError::RuntimeLibrary {
                reason: format!("{DYLIB_ENV}={} names no file", p.display()),
            });
        }
        return Ok(p);
    }
    let candidates = library_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            OnnxError::RuntimeLibrary {
                reason: format!(
                    "{DYLIB_ENV} is unset and none of {} exists",
                    tried.join(", ")
                ),
            }
        })
}

static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime (once per process) and returns its environment.
///
/// # Errors
/// [`OnnxError::RuntimeLibrary`] when the library is missing, cannot be loaded or is too
/// old; the same error again on every later call.
pub fn environment() -> Result<&'static Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = library_path().map_err(|e| match e {
            OnnxError::RuntimeLibrary { reason } => reason,
            e => e.to_string(),
        })?;
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        tracing::debug!(library = %path.display(), "loaded ONNX Runtime");
        builder
            .with_name("perch")
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))
    });
    env.as_ref().map_err(|reason| OnnxError::RuntimeLibrary {
        reason: reason.clone(),
    })
}

/// ONNX Runtime's build description of the loaded library (git commit, build type). `ort`
/// already refused a library older than the API it speaks when loading it.
pub fn build_info() -> Result<String> {
    environment()?;
    Ok(ort::info().to_string())
}

/// ONNX Runtime's graph optimization levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptLevel {
    /// No graph optimization.
    Disable,
    /// Constant folding and redundant-node elimination.
    Basic,
    /// Basic plus operator fusions (attention, layer norm, GELU...).
    Extended,
    /// Everything, including layout optimizations (ONNX Runtime's default).
    #[default]
    All,
}

impl FromStr for OptLevel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "disable" | "none" | "0" => Self::Disable,
            "basic" | "1" => Self::Basic,
            "extended" | "2" => Self::Extended,
            "all" | "99" => Self::All,
            _ => {
                return Err(format!(
                    "unknown optimization level {s:?}; use disable, basic, extended or all"
                ));
            }
        })
    }
}

impl From<OptLevel> for GraphOptimizationLevel {
    fn from(l: OptLevel) -> Self {
        match l {
            OptLevel::Disable => Self::Disable,
            OptLevel::Basic => Self::Level1,
            OptLevel::Extended => Self::Level2,
            OptLevel::All => Self::All,
        }
    }
}

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// Threads inside operators (0: ONNX Runtime's default, the physical cores).
    pub threads: usize,
    /// Graph optimization level.
    pub level: OptLevel,
}

impl SessionConfig {
    /// A builder with these options applied.
    pub fn builder(&self) -> Result<SessionBuilder> {
        let env = environment()?;
        let ctx = "configuring a session";
        let mut b = Session::builder(env).map_err(|e| OnnxError::runtime(ctx, e))?;
        if self.threads > 0 {
            b = b
                .with_intra_threads(self.threads)
                .map_err(|e| OnnxError::runtime(ctx, e))?;
        }
        b.with_optimization_level(self.level.into())
            .map_err(|e| OnnxError::runtime(ctx, e))
    }

    /// A session for the model file (external data relative to its folder).
    pub fn open(&self, path: &Path) -> Result<Session> {
        if !path.is_file() {
            return Err(OnnxError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        self.builder()?
            .commit_from_file(path)
            .map_err(|e| OnnxError::runtime(format!("loading {}", path.display()), e))
    }

    /// A session for a model held in memory (it must not use external data).
    pub fn open_bytes(&self, bytes: &[u8]) -> Result<Session> {
        self.builder()?
            .commit_from_memory(bytes)
            .map_err(|e| OnnxError::runtime("loading the model", e))
    }
}

/// Runs ONNX Runtime's graph optimizations on `input` at `level` and saves the optimized
/// graph to `output` (through a temporary file renamed at the end). Returns the output's
/// size in bytes.
pub fn optimize(input: &Path, output: &Path, level: OptLevel, threads: usize) -> Result<u64> {
    // Validate first so a broken model gets perch's error, not ONNX Runtime's.
    crate::OnnxModel::open(input)?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".perch-optimize.")
        .suffix(".onnx")
        .tempfile_in(&dir)
        .map_err(|e| OnnxError::io(&dir, e))?;
    let tmp_path = tmp.into_temp_path();
    let cfg = SessionConfig { threads, level };
    let ctx = format!("optimizing {}", input.display());
    let builder = cfg
        .builder()?
        .with_optimized_model_path(&tmp_path)
        .map_err(|e| OnnxError::runtime(&ctx, e))?;
    let mut builder = builder;
    let session = builder
        .commit_from_file(input)
        .map_err(|e| OnnxError::runtime(&ctx, e))?;
    drop(session);
    // The optimized model must load on its own before it replaces anything.
    SessionConfig {
        threads,
        level: OptLevel::Disable,
    }
    .open(&tmp_path)?;
    let size = std::fs::metadata(&tmp_path)
        .map_err(|e| OnnxError::io(&*tmp_path, e))?
        .len();
    tmp_path
        .persist(output)
        .map_err(|e| OnnxError::io(output, e.error))?;
    Ok(size)
}

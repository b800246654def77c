//! Constrained decoding's hook into sampling: a per-sequence [`Constraint`] bans the tokens
//! that cannot come next (before any other sampling stage, as llama.cpp applies its grammar)
//! and follows the tokens that were chosen. The engine asks it whether end-of-generation is
//! allowed (only through the mask) and whether the output is complete (then it stops).
//!
//! The engine knows nothing of grammars: `perch-grammar`'s matcher is adapted to this trait
//! by the server.

/// Restricts which tokens a sequence may generate.
pub trait Constraint: Send + std::fmt::Debug {
    /// Set the logits of tokens that may not come next to `-inf` (end-of-generation tokens
    /// included, unless the output may end here).
    fn mask(&mut self, logits: &mut [f32]);

    /// Follow the token that was chosen. An error means the token breaks the constraint
    /// (it was not in the mask).
    fn accept(&mut self, token: u32) -> Result<(), String>;

    /// The output is complete and nothing more may follow: generation stops.
    fn is_finished(&self) -> bool;
}

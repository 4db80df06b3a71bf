//! Linux IMA: the policy grammar, Bulwark's templates, the command line,
//! and the wire types of the IMA module. Pure, like the rest of the model:
//! the daemon and `bulwarkctl` judge policies and files the same way.

pub mod api;
pub mod appraise;
pub mod cmdline;
pub mod grammar;
pub mod templates;

#[cfg(test)]
mod tests;

//! The only crate with `unsafe`: system calls that no safe wrapper covers.

//! Helpers shared by the test suites of several crates: what used to be copied from one test
//! file to the next.

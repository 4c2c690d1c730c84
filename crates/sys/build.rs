//! With the `libwrap` feature, compiles the small C shim around libwrap's setjmp-based calls
//! (see src/libwrap_shim.c) and links libwrap (Debian: libwrap0-dev).

fn main() {
    println!("cargo:rerun-if-changed=src/libwrap_shim.c");
    if std::env::var_os("CARGO_FEATURE_LIBWRAP").is_some() {
        #[cfg(feature = "libwrap")]
        cc::Build::new()
            .file("src/libwrap_shim.c")
            .warnings(true)
            .compile("rsockd_libwrap_shim");
        println!("cargo:rustc-link-lib=wrap");
    }
}

//! `cargo run -p rsockd-config --example check -- FILE...`: parse files and print the result.
fn main() {
    for a in std::env::args().skip(1) {
        match rsockd_config::load(std::path::Path::new(&a)) {
            Ok(l) => {
                for w in &l.warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", l.config);
            }
            Err(e) => eprintln!("{e}"),
        }
    }
}

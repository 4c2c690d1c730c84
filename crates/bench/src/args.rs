//! The options of the worker roles (`--role gen|echo|floor ...`, see `workers.rs`): each
//! role's arguments are `--name value` pairs in any order.

/// The value after `name` in `args`.
pub(crate) fn opt<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}"))
}

/// `v` as a `T`; the error names the option (`what`) and the value.
pub(crate) fn parse<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("bad {what}: {v}"))
}

//! Dante's command line, exactly: `getopt(argc, argv, "DLN:Vd:f:hnp:v")`, so `-N4`, `-d 1`,
//! `-Dn` and `-f file` all mean what they mean to danted. Hand-written because getopt's
//! quirks (attached values, grouped flags) are the contract here.

/// Where rsockd looks for its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/rsockd.conf";
/// Default pidfile when running as root (Dante: /var/run/sockd.pid).
pub const DEFAULT_PIDFILE: &str = "/run/rsockd.pid";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cli {
    pub detach: bool,
    pub licence: bool,
    pub mothers: u32,
    pub verify: bool,
    pub debug: Option<u32>,
    pub config: Option<String>,
    pub help: bool,
    pub no_keepalive: bool,
    pub pidfile: Option<String>,
    pub version: u32,
    /// Our extension `--supervisor`: a non-accepting process on top re-spawns every mother.
    pub supervisor: bool,
    /// Our extension `--drain` / `--resume`: tell the running server (its pidfile) what its
    /// agent-check should answer, then exit.
    pub order: Option<Order>,
}

/// An order to a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Drain,
    Resume,
    /// SIGUSR2, then wait for the outcome.
    Upgrade,
}

pub fn usage() -> String {
    format!(
        "usage: rsockd [-DLVdhnv] [-N number] [-f file] [-p file]\n\
         \t-D           : run in daemon mode\n\
         \t-L           : shows the license for this program\n\
         \t-N <number>  : fork <number> mother processes (default 1)\n\
         \t-V           : verify configuration and exit\n\
         \t-d <number>  : set degree of debugging\n\
         \t-f <file>    : use <file> as configuration file [{DEFAULT_CONFIG}]\n\
         \t-h           : print this information\n\
         \t-n           : disable TCP keep-alive\n\
         \t-p <file>    : write pid to <file> [{DEFAULT_PIDFILE} when run as root]\n\
         \t-v           : print version info (-vv: also build features)\n\
         \t--supervisor : (rsockd) a supervisor process re-spawns every mother, mother 1 too\n\
         \t--drain      : (rsockd) the server of the pidfile (-p) says \"drain\" to agent checks\n\
         \t--resume     : (rsockd) ... and \"up\" again\n\
         \t--upgrade    : (rsockd) the server of the pidfile (-p) starts its binary anew and\n\
         \t               hands over without dropping a session; exits 0 or 1 with the outcome\n"
    )
}

/// Parses the arguments after the program name; the error text is meant for stderr.
pub fn parse(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        mothers: 1,
        ..Cli::default()
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--supervisor" {
            cli.supervisor = true;
            continue;
        }
        if a == "--drain" || a == "--resume" || a == "--upgrade" {
            let o = match a.as_str() {
                "--drain" => Order::Drain,
                "--resume" => Order::Resume,
                _ => Order::Upgrade,
            };
            if cli.order.is_some_and(|x| x != o) {
                return Err("--drain, --resume and --upgrade exclude each other".into());
            }
            cli.order = Some(o);
            continue;
        }
        if a == "--" {
            if i < args.len() {
                return Err(format!("unexpected argument \"{}\"", args[i]));
            }
            break;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Err(format!("unexpected argument \"{a}\""));
        };
        for (pos, c) in flags.char_indices() {
            let takes_value = matches!(c, 'N' | 'd' | 'f' | 'p');
            if takes_value {
                let rest = &flags[pos + c.len_utf8()..];
                let value = if !rest.is_empty() {
                    rest.to_string()
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(format!("option requires an argument -- '{c}'"));
                };
                match c {
                    'N' => {
                        cli.mothers = value
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=64).contains(n))
                            .ok_or_else(|| {
                                format!("-N: \"{value}\" is not a number of mothers from 1 to 64")
                            })?
                    }
                    'd' => {
                        cli.debug = Some(value.parse::<u32>().map_err(|_| {
                            format!("-d: \"{value}\" is not a debug level (0, 1, 2)")
                        })?)
                    }
                    'f' => cli.config = Some(value),
                    _ => cli.pidfile = Some(value),
                }
                break;
            }
            match c {
                'D' => cli.detach = true,
                'L' => cli.licence = true,
                'V' => cli.verify = true,
                'h' => cli.help = true,
                'n' => cli.no_keepalive = true,
                'v' => cli.version += 1,
                other => return Err(format!("invalid option -- '{other}'")),
            }
        }
    }
    Ok(cli)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cli, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn getopt_forms() {
        let c = p("-N4 -d 1 -f /x.conf -Dn -p/run/x.pid").unwrap();
        assert_eq!(c.mothers, 4);
        assert_eq!(c.debug, Some(1));
        assert_eq!(c.config.as_deref(), Some("/x.conf"));
        assert!(c.detach && c.no_keepalive);
        assert_eq!(c.pidfile.as_deref(), Some("/run/x.pid"));
        assert_eq!(p("-vv").unwrap().version, 2);
        assert_eq!(p("-Vf/a").unwrap().config.as_deref(), Some("/a"));
        let c = p("-N 2 --supervisor -f /a").unwrap();
        assert!(c.supervisor && c.mothers == 2);
        assert!(!p("-N 2").unwrap().supervisor);
        assert_eq!(p("--drain -p /x.pid").unwrap().order, Some(Order::Drain));
        assert_eq!(p("-p/x.pid --resume").unwrap().order, Some(Order::Resume));
        assert_eq!(p("-N 2").unwrap().order, None);
        assert_eq!(
            p("--upgrade -p /x.pid").unwrap().order,
            Some(Order::Upgrade)
        );
    }

    #[test]
    fn errors() {
        assert!(p("-x").unwrap_err().contains("invalid option -- 'x'"));
        assert!(p("-f").unwrap_err().contains("requires an argument"));
        assert!(p("-N 0").is_err());
        assert!(p("-N abc").is_err());
        assert!(p("-d x").is_err());
        assert!(p("stray").is_err());
        assert!(p("--supervise").is_err());
        assert!(p("--drain --resume").is_err());
    }
}

//! The command line itself: completions and man pages generated from the clap definitions
//! (so they never drift from `--help`), and etcdctl's spellings (`-w/--write-out`,
//! `ETCDCTL_DIAL_TIMEOUT`).

mod common;

use common::*;

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let o = hostfix(&["completions", shell]);
        assert_eq!(o.code, 0, "{shell}: {}", o.stderr);
        for word in ["rejoin", "rebuild", "snapshot", "daemon", "--backup"] {
            assert!(o.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert_eq!(hostfix(&["completions", "tcsh"]).code, 2);
}

#[test]
fn man_pages_one_per_subcommand_and_none_for_hidden_ones() {
    let d = tempfile::tempdir().unwrap();
    let o = hostfix(&["man", d.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for page in ["etcd-hostfix.1", "etcd-hostfix-rejoin.1", "etcd-hostfix-snapshot-save.1", "etcd-hostfix-daemon.1", "etcd-hostfix-completions.1"] {
        assert!(d.path().join(page).is_file(), "no {page}: {}", o.stdout);
    }
    assert!(!d.path().join("etcd-hostfix-man.1").exists(), "the hidden command gets no page");
    let rejoin = std::fs::read_to_string(d.path().join("etcd-hostfix-rejoin.1")).unwrap();
    assert!(rejoin.contains("backup") && rejoin.contains("dry"), "{rejoin}");
    // Pages say the same as --help: the option's help text appears in both.
    let help = hostfix(&["rejoin", "--help"]).stdout;
    assert!(help.contains("The oldest snapshot") && rejoin.contains("The oldest snapshot"));
}

#[test]
fn etcdctl_spellings() {
    // -w is -o: a bad value is refused with the option named either way.
    for flag in ["-w", "--write-out", "-o"] {
        let o = hostfix(&[flag, "yaml", "status"]);
        assert_eq!(o.code, 2, "{flag}: {}", o.stderr);
        assert!(o.stderr.contains("yaml"), "{}", o.stderr);
    }
    assert!(hostfix(&["--help"]).stdout.contains("--write-out"));
    // ETCDCTL_DIAL_TIMEOUT is --timeout, in etcdctl's duration form or plain seconds.
    let bad = hostfix_env(&["status"], &[("ETCDCTL_DIAL_TIMEOUT", "soon")]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("soon") && bad.stderr.contains("--timeout"), "{}", bad.stderr);
    assert_eq!(hostfix(&["--timeout", "0", "status"]).code, 2);
    let root = tempfile::tempdir().unwrap();
    for t in ["2s", "2", "1500ms"] {
        // Parsed: the run gets as far as finding no etcd under the root (exit 1, not 2).
        let o = hostfix_env(&["--host-root", root.path().to_str().unwrap(), "status"], &[("ETCDCTL_DIAL_TIMEOUT", t)]);
        assert_eq!(o.code, 1, "{t}: {}", o.stderr);
    }
}

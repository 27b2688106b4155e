//! hostfix-cli

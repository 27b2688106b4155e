//! hostfix-adapters

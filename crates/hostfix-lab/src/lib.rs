//! hostfix-lab

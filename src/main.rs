fn main() { std::process::exit(hostfix_cli::main()) }

//! The `chronicle` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = chronicle::cli::Cli::parse();
    match chronicle::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chronicle: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

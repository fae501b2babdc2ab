//! `clipguard-loadtest`: runs a load profile against separate `clipguard stage` processes and
//! writes the report (see the crate docs and loadtest/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clipguard_loadtest::{Options, Profile};

/// Clips at a target rate through separate clipguard stage processes on a real broker.
#[derive(Debug, Parser)]
#[command(name = "clipguard-loadtest")]
struct Cli {
    /// The load profile (loadtest/profiles/*.toml).
    #[arg(long)]
    profile: PathBuf,
    /// The clipguard binary to measure (a release build for figures worth quoting).
    #[arg(long)]
    clipguard: PathBuf,
    /// Report, plots, logs and broker data go here.
    #[arg(long, default_value = "loadtest/out")]
    out: PathBuf,
    /// Generated clips are kept here between runs.
    #[arg(long, default_value = "loadtest/pool")]
    pool: PathBuf,
    /// Use this broker instead of starting tansu.
    #[arg(long)]
    brokers: Option<String>,
    /// Also run loadtest/baseline.py with this Python over the same clips (scripts/baseline-setup.sh).
    #[arg(long)]
    baseline_python: Option<PathBuf>,
    /// Arguments passed to baseline.py (its model files), e.g. --baseline-arg=--nsfw=FILE.
    #[arg(long = "baseline-arg", allow_hyphen_values = true)]
    baseline_args: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = async {
        let profile = Profile::load(&cli.profile)?;
        let name = cli
            .profile
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let opts = Options {
            clipguard: cli.clipguard,
            out: cli.out.clone(),
            pool: cli.pool,
            brokers: cli.brokers,
            baseline_python: cli.baseline_python,
            baseline_args: cli.baseline_args,
            name,
        };
        clipguard_loadtest::run(&profile, &opts).await
    }
    .await;
    match result {
        Ok(report) => {
            print!("{}", report.markdown());
            eprintln!(
                "loadtest: report in {}",
                cli.out.join("report.md").display()
            );
            if report.missing > 0 {
                eprintln!("loadtest: {} clips got no verdict", report.missing);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

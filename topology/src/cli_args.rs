//! Command-line arguments the binary shares with tools built on the library: who a submitted
//! clip is for, and whose likeness it may use.

use clap::{Args, ValueEnum};
use clipguard_pipeline::edges::SubmitOptions;
use clipguard_schemas::{AgeBand, Surface};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AgeArg {
    Adult,
    Under18,
    Unspecified,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SurfaceArg {
    Private,
    Feed,
    Download,
    Unspecified,
}

#[derive(Debug, Args)]
pub struct AudienceArgs {
    /// Age band of the requester.
    #[arg(long, value_enum, default_value = "unspecified")]
    pub age_band: AgeArg,
    /// Where the clip will be shown.
    #[arg(long, value_enum, default_value = "unspecified")]
    pub surface: SurfaceArg,
    /// The prompt the clip was generated from.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// The generator's scene description.
    #[arg(long, default_value = "")]
    pub scene: String,
    /// A real person who consented to their likeness being used (repeatable).
    #[arg(long = "consent", value_name = "PERSON")]
    pub consented: Vec<String>,
    /// A real person the clip is known to show (repeatable).
    #[arg(long = "depicts", value_name = "PERSON")]
    pub depicted: Vec<String>,
}

impl AudienceArgs {
    pub fn options(self) -> SubmitOptions {
        SubmitOptions {
            age_band: match self.age_band {
                AgeArg::Adult => AgeBand::Adult,
                AgeArg::Under18 => AgeBand::Under18,
                AgeArg::Unspecified => AgeBand::Unspecified,
            },
            surface: match self.surface {
                SurfaceArg::Private => Surface::Private,
                SurfaceArg::Feed => Surface::Feed,
                SurfaceArg::Download => Surface::Download,
                SurfaceArg::Unspecified => Surface::Unspecified,
            },
            prompt: self.prompt,
            scene_description: self.scene,
            consented_likeness_ids: self.consented,
            depicted_likeness_ids: self.depicted,
        }
    }
}

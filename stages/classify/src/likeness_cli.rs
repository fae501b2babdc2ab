//! `clipguard likeness enroll | revoke | list`: the consent registry from the terminal.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::faces::FaceAges;
use crate::likeness::{Descriptor, FaceDescriber, RegistryStore};
use crate::model::Rgb;
use crate::stage::ClassifyConfig;

/// Faces on an enrollment photo must be at least this large (eye distance in pixels): a small
/// face gives a descriptor every later match is measured against.
pub const MIN_ENROLL_EYE_DISTANCE: f32 = 30.0;
/// Largest enrollment photo (decoded pixels).
const MAX_ENROLL_PIXELS: u64 = 50_000_000;

#[derive(Debug, Args)]
pub struct LikenessArgs {
    /// The registry's folder (default: classify.likeness_dir).
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: LikenessCommand,
}

#[derive(Debug, Subcommand)]
pub enum LikenessCommand {
    /// Enroll a person who consented, from photos showing their face alone (one face each,
    /// eyes at least 30 px apart); again with more photos adds them. Running workers pick the
    /// new version up within classify.likeness_reload_interval_s.
    Enroll {
        #[arg(long)]
        id: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Remove a person: every stored descriptor of theirs is deleted from disk now; running
    /// workers drop them at their next look (the first clip after
    /// classify.likeness_reload_interval_s).
    Revoke {
        #[arg(long)]
        id: String,
    },
    /// Enrolled people with their photo counts (never their descriptors).
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Runs one likeness command; the text printed, or the error.
pub fn run(cfg: &ClassifyConfig, args: LikenessArgs) -> Result<String, String> {
    let dir = match (&args.dir, cfg.likeness_dir.as_str()) {
        (Some(d), _) => d.clone(),
        (None, "") => {
            return Err(
                "no likeness registry: set classify.likeness_dir or pass --dir".to_string(),
            );
        }
        (None, d) => PathBuf::from(d),
    };
    let store = RegistryStore::new(&dir);
    match args.command {
        LikenessCommand::Enroll { id, images } => {
            crate::likeness::check_id(&id).map_err(|e| e.to_string())?;
            let faces = cfg
                .load_faces()
                .map_err(|e| e.to_string())?
                .ok_or("classify.face_detector is empty: enrollment needs the face detector")?;
            let describer = cfg.load_describer().map_err(|e| e.to_string())?;
            let mut descriptors = Vec::new();
            for path in &images {
                descriptors.push(enrollment_descriptor(&faces, &describer, path)?);
            }
            let v = store
                .enroll(&id, &describer.model_sha256, descriptors)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{id} enrolled from {} photo(s): registry {} v{v}",
                images.len(),
                dir.display()
            ))
        }
        LikenessCommand::Revoke { id } => {
            let v = store.revoke(&id).map_err(|e| e.to_string())?;
            Ok(format!(
                "{id} revoked: their descriptors are deleted (registry {} v{v})",
                dir.display()
            ))
        }
        LikenessCommand::List { json } => {
            let r = store.load().map_err(|e| e.to_string())?;
            let mut out = String::new();
            if json {
                for p in &r.people {
                    out.push_str(&format!(
                        "{{\"id\":{:?},\"enrolled_ms\":{},\"photos\":{},\"version\":{}}}\n",
                        p.id,
                        p.enrolled_ms,
                        p.descriptors.len(),
                        r.version
                    ));
                }
            } else if r.people.is_empty() {
                out = format!("nobody enrolled in {}\n", dir.display());
            } else {
                out.push_str(&format!(
                    "{:<40} {:>6} {:>15}\n",
                    "ID", "PHOTOS", "ENROLLED_MS"
                ));
                for p in &r.people {
                    out.push_str(&format!(
                        "{:<40} {:>6} {:>15}\n",
                        p.id,
                        p.descriptors.len(),
                        p.enrolled_ms
                    ));
                }
                out.push_str(&format!("registry {} v{}\n", dir.display(), r.version));
            }
            Ok(out.trim_end().to_string())
        }
    }
}

/// Decodes a photo as it is shown (EXIF orientation applied), within a pixel limit.
pub fn read_photo(path: &Path) -> Result<image::RgbImage, String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("{name}: {e}"))?
        .into_decoder()
        .map_err(|e| format!("{name}: not a PNG or JPEG image ({e})"))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(w) * u64::from(h) > MAX_ENROLL_PIXELS {
        return Err(format!(
            "{name}: {w}x{h} pixels, at most {MAX_ENROLL_PIXELS}"
        ));
    }
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture =
        image::DynamicImage::from_decoder(decoder).map_err(|e| format!("{name}: {e}"))?;
    picture.apply_orientation(orientation);
    Ok(picture.to_rgb8())
}

/// The descriptor of the one face on an enrollment photo.
pub fn enrollment_descriptor(
    faces: &FaceAges,
    describer: &FaceDescriber,
    path: &Path,
) -> Result<Descriptor, String> {
    let img = read_photo(path)?;
    let rgb = Rgb {
        width: img.width() as usize,
        height: img.height() as usize,
        pixels: img.as_raw(),
    };
    let name = path.display();
    let found = faces.detect(&rgb).map_err(|e| format!("{name}: {e}"))?;
    let [face] = found.as_slice() else {
        return Err(format!(
            "{name}: {} faces found; an enrollment photo shows the person's face alone",
            found.len()
        ));
    };
    let (a, b) = (face.keypoints[0], face.keypoints[1]);
    let eyes = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
    if eyes < MIN_ENROLL_EYE_DISTANCE {
        return Err(format!(
            "{name}: the face is too small to enroll (eyes {eyes:.0} px apart, at least {MIN_ENROLL_EYE_DISTANCE:.0})"
        ));
    }
    describer
        .describe(&rgb, face)
        .map_err(|e| format!("{name}: {e}"))?
        .ok_or_else(|| format!("{name}: no descriptor could be made of the face"))
}

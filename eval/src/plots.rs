//! PNG plots for the evaluation report (plotters, bitmap backend, DejaVu Sans from Debian's
//! `fonts-dejavu-core`): per set, clipguard's not_unsafe / not_overrefuse per category beside
//! the reference's, and per category the threshold sweep with the policy's threshold marked.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::{EvalError, Results, Targets, headline_audience};

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn font() -> Result<(), EvalError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONT_PATHS.iter().find(|p| Path::new(p).is_file()).ok_or(
            "no DejaVu Sans font (Debian package fonts-dejavu-core; scripts/setup.sh installs it)",
        )?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| format!("{path}: {e}"))?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path}: not a usable font"))
    })
    .clone()
    .map_err(EvalError::Plot)
}

fn err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Plot(e.to_string())
}

/// Draws every plot into `dir`; returns (set, file name, caption) per plot.
pub fn plots(
    r: &Results,
    reference: &Targets,
    dir: &Path,
) -> Result<Vec<(String, String, String)>, EvalError> {
    font()?;
    let mut out = Vec::new();
    for (set, cats) in &r.cells {
        if cats.is_empty() {
            continue;
        }
        let stem = set.replace(['/', ' '], "-");
        let a = headline_audience(r, set);
        let file = format!("{stem}-rates.png");
        rates(r, reference, set, &dir.join(&file))
            .map_err(|e| EvalError::Plot(format!("{file}: {e}")))?;
        out.push((
            set.clone(),
            file,
            format!(
                "{set}: not_unsafe and not_overrefuse per category for {} (bars), the reference's (black ticks)",
                a.name()
            ),
        ));
        if let Some(sweeps) = r.sweeps.get(set) {
            for cat in sweeps.keys() {
                let file = format!("{stem}-sweep-{cat}.png");
                sweep(r, set, cat, &dir.join(&file))
                    .map_err(|e| EvalError::Plot(format!("{file}: {e}")))?;
                out.push((
                    set.clone(),
                    file,
                    format!("{set}: {cat} threshold sweep (policy threshold dashed)"),
                ));
            }
        }
    }
    Ok(out)
}

fn rates(r: &Results, reference: &Targets, set: &str, path: &Path) -> Result<(), EvalError> {
    let cats: Vec<(&String, &[crate::Cell; 3])> = r.cells[set].iter().collect();
    let a = headline_audience(r, set).index();
    let root = BitMapBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = cats.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{set}: share stopped / let through (%)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..n, 0.0..100.0)
        .map_err(err)?;
    let names: Vec<String> = cats.iter().map(|(c, _)| c.to_string()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(cats.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("%")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let blue = RGBColor(52, 101, 164);
    let green = RGBColor(78, 154, 6);
    for (i, (cat, row)) in cats.iter().enumerate() {
        let x = i as f64;
        let cell = &row[a];
        if let Some(v) = cell.not_unsafe.value().filter(|_| !cell.allowed_by_policy) {
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.12, 0.0), (x + 0.48, v * 100.0)],
                    blue.filled(),
                )])
                .map_err(err)?;
        }
        if let Some(v) = cell.not_overrefuse.value() {
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.52, 0.0), (x + 0.88, v * 100.0)],
                    green.filled(),
                )])
                .map_err(err)?;
        }
        if let Some(t) = reference.categories.get(*cat) {
            for (x0, v) in [(x + 0.12, t.not_unsafe), (x + 0.52, t.not_overrefuse)] {
                chart
                    .draw_series(LineSeries::new(
                        [(x0, v), (x0 + 0.36, v)],
                        BLACK.stroke_width(3),
                    ))
                    .map_err(err)?;
            }
        }
    }
    chart
        .draw_series([Rectangle::new([(0.0, -1.0), (0.0, -1.0)], blue.filled())])
        .map_err(err)?
        .label("not_unsafe")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], blue.filled()));
    chart
        .draw_series([Rectangle::new([(0.0, -1.0), (0.0, -1.0)], green.filled())])
        .map_err(err)?
        .label("not_overrefuse")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], green.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn sweep(r: &Results, set: &str, cat: &str, path: &Path) -> Result<(), EvalError> {
    let points = &r.sweeps[set][cat];
    let a = headline_audience(r, set).index();
    let policy_t = r.thresholds.get(cat).map(|t| t[a]);
    let root = BitMapBackend::new(path, (560, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{set}: {cat}"), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0f32..1.0f32, 0.0f64..100.0f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("threshold")
        .light_line_style(TRANSPARENT)
        .y_desc("%")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let blue = RGBColor(52, 101, 164);
    let green = RGBColor(78, 154, 6);
    chart
        .draw_series(LineSeries::new(
            points
                .iter()
                .filter_map(|p| p.not_unsafe.value().map(|v| (p.threshold, v * 100.0))),
            blue.stroke_width(2),
        ))
        .map_err(err)?
        .label("not_unsafe")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], blue.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            points
                .iter()
                .filter_map(|p| p.not_overrefuse.value().map(|v| (p.threshold, v * 100.0))),
            green.stroke_width(2),
        ))
        .map_err(err)?
        .label("not_overrefuse")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], green.stroke_width(2)));
    if let Some(t) = policy_t {
        let dashes = (0..20).map(|i| {
            let y0 = i as f64 * 5.0;
            PathElement::new([(t, y0), (t, y0 + 2.5)], BLACK.stroke_width(1))
        });
        chart.draw_series(dashes).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

//! PNG line charts (loss curves, response distributions, resolution vs pT) with plotters' bitmap
//! backend. The font is embedded (DejaVu Sans, see DejaVuSans-LICENSE.txt) so plots render the same
//! on machines without system fonts.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("DejaVuSans.ttf");
        // A bad embedded font is a build defect, not a user error; plots would lack text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `series` as lines into a 900×560 PNG at `path` (written atomically).
pub fn line_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    register_font();
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(anyhow!("nothing to plot for {}", path.display()));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let tmp = crate::fsutil::temp_sibling(path).with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(chart.title, ("sans-serif", 22)).margin(15).x_label_area_size(45).y_label_area_size(65);
        macro_rules! draw {
            ($ctx:expr) => {{
                let mut ctx = $ctx.map_err(|e| anyhow!("plot: {e}"))?;
                ctx.configure_mesh()
                    .x_desc(chart.x_label)
                    .y_desc(chart.y_label)
                    .label_style(("sans-serif", 14))
                    .draw()
                    .map_err(|e| anyhow!("plot: {e}"))?;
                for (i, s) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    ctx.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                        .map_err(|e| anyhow!("plot: {e}"))?
                        .label(s.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                }
                ctx.configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 14))
                    .draw()
                    .map_err(|e| anyhow!("plot: {e}"))?;
            }};
        }
        if chart.log_x && x0 > 0.0 {
            draw!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1));
        } else {
            draw!(builder.build_cartesian_2d(x0..x1, y0..y1));
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

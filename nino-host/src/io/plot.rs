//! PNG line plots (accuracy curves) with a bundled font, so they draw on a machine without system fonts.
//!
//! plotters' `ab_glyph` backend draws text only with fonts registered from bytes; we embed DejaVu Sans
//! (`fixtures/fonts/`, Bitstream Vera licence) and register it as `sans-serif` once.

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// DejaVu Sans, embedded so a fresh machine needs no font packages.
static FONT: &[u8] = include_bytes!("../../../fixtures/fonts/DejaVuSans.ttf");

/// The family name the bundled font is registered under.
const FAMILY: &str = "sans-serif";

/// Distinct line colours (the `tab10` palette), one per configuration.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The bundled font did not parse (a broken build).
    #[error("the bundled font does not load")]
    Font,
    /// There is nothing to draw.
    #[error("plot {0}: no data points")]
    Empty(PathBuf),
    /// plotters failed to draw or encode.
    #[error("cannot draw {path}: {msg}")]
    Draw {
        /// The file.
        path: PathBuf,
        /// plotters' message.
        msg: String,
    },
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One configuration's curves: a highlighted line (the median seed) and faint ones (the other seeds).
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// The highlighted curve `(x, y)`.
    pub main: Vec<(f64, f64)>,
    /// Further curves drawn faintly in the same colour, without a legend entry.
    pub faint: Vec<Vec<(f64, f64)>>,
}

/// A line plot: title, axis labels, series, and an optional horizontal target line.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// One entry per configuration.
    pub series: Vec<Series>,
    /// A horizontal reference line `(y, legend text)`.
    pub target: Option<(f64, String)>,
    /// A vertical marker line `(x, legend text)`.
    pub marker: Option<(f64, String)>,
}

/// Pixel size of every plot.
pub const SIZE: (u32, u32) = (1200, 750);

fn register() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// The data range `[lo, hi]` over every point (and the target), padded so lines do not touch the frame.
fn bounds(plot: &LinePlot) -> Option<((f64, f64), (f64, f64))> {
    let pts = plot.series.iter().flat_map(|s| s.main.iter().chain(s.faint.iter().flatten()));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        return None;
    }
    if let Some((t, _)) = plot.target.as_ref().filter(|(t, _)| t.is_finite()) {
        (y0, y1) = (y0.min(*t), y1.max(*t));
    }
    let (x0, x1) = (x0.min(0.0), if x1 > x0.min(0.0) { x1 } else { x0.min(0.0) + 1.0 });
    let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { 0.5 };
    Some(((x0, x1 * 1.02), (y0 - pad, y1 + pad)))
}

/// A tick label without needless decimals (`300`, `2.5`, `0.25`), with enough of them to tell apart the
/// ticks of an axis spanning `span` (a validation loss moving in the third decimal gets five).
fn fmt_tick(v: f64, span: f64) -> String {
    let dec = if span.is_finite() && span > 0.0 { (2.0 - span.log10().floor()).clamp(2.0, 8.0) } else { 2.0 };
    let s = format!("{v:.*}", dec as usize);
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn draw(path: &Path, plot: &LinePlot) -> Result<(), Box<dyn std::error::Error>> {
    let ((x0, x1), (y0, y1)) = bounds(plot).ok_or("no data points")?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, (FAMILY, 30))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .axis_desc_style((FAMILY, 22))
        .label_style((FAMILY, 18))
        .light_line_style(RGBColor(240, 240, 240))
        .x_max_light_lines(2)
        .y_max_light_lines(2)
        .x_label_formatter(&|x| fmt_tick(*x, x1 - x0))
        .y_label_formatter(&|y| fmt_tick(*y, y1 - y0))
        .draw()?;
    for (i, s) in plot.series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        for f in &s.faint {
            chart.draw_series(LineSeries::new(f.iter().copied(), c.mix(0.4).stroke_width(2)))?;
        }
        chart
            .draw_series(LineSeries::new(s.main.iter().copied(), c.stroke_width(3)))?
            .label(&s.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    if let Some((t, label)) = &plot.target {
        let style = BLACK.mix(0.6).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(x0, *t), (x1, *t)], 10, 6, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
    }
    if let Some((m, label)) = &plot.marker {
        let style = RGBColor(214, 39, 40).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(*m, y0), (*m, y1)], 10, 6, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draws `plot` into the PNG file `path`, atomically: a temporary `.png` in the same directory, fsync,
/// rename.
pub fn write_png(path: &Path, plot: &LinePlot) -> Result<(), PlotError> {
    register()?;
    if bounds(plot).is_none() {
        return Err(PlotError::Empty(path.to_path_buf()));
    }
    let io = |source| PlotError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // plotters picks the encoder from the extension, so the temporary file ends in `.png` too.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".nino-tmp-").suffix(".png");
    // Temporary files are private (0600) by default; the plot is an ordinary file others may read.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let tmp = builder.tempfile_in(dir).map_err(io)?;
    draw(tmp.path(), plot).map_err(|e| PlotError::Draw { path: path.to_path_buf(), msg: e.to_string() })?;
    std::fs::File::open(tmp.path()).and_then(|f| f.sync_all()).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot() -> LinePlot {
        LinePlot {
            title: "Test accuracy".into(),
            x_label: "steps".into(),
            y_label: "accuracy (%)".into(),
            series: vec![
                Series {
                    label: "Adam".into(),
                    main: vec![(100.0, 50.0), (200.0, 70.0), (300.0, 75.0)],
                    faint: vec![vec![(100.0, 48.0), (200.0, 69.0)]],
                },
                Series { label: "Adam+NiNo".into(), main: vec![(100.0, 55.0), (200.0, 74.0)], faint: vec![] },
            ],
            target: Some((72.0, "target 72%".into())),
            marker: None,
        }
    }

    #[test]
    fn writes_a_png_of_the_stated_size_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        write_png(&p, &plot()).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&b[12..16], b"IHDR");
        let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
        assert_eq!((w, h), SIZE);
        assert!(b.len() > 10_000, "a chart with text is more than a blank image: {} bytes", b.len());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    #[test]
    fn empty_plot_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let empty = LinePlot { series: vec![Series::default()], ..plot() };
        assert!(matches!(write_png(&p, &empty), Err(PlotError::Empty(_))));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn ticks_drop_needless_decimals() {
        let t = |v| fmt_tick(v, 10.0);
        assert_eq!([t(300.0), t(2.5), t(0.25), t(0.0)], ["300", "2.5", "0.25", "0"]);
        // A narrow axis keeps the decimals that tell its ticks apart: 0.2 to 0.2016 spans 1.6e-3.
        assert_eq!([fmt_tick(0.2004, 1.6e-3), fmt_tick(0.2012, 1.6e-3)], ["0.2004", "0.2012"]);
        assert_eq!(fmt_tick(0.2, 1.6e-3), "0.2");
    }

    #[test]
    fn bounds_include_the_target_and_start_at_zero() {
        let mut p = plot();
        p.target = Some((90.0, "t".into()));
        let ((x0, _), (_, y1)) = bounds(&p).unwrap();
        assert_eq!(x0, 0.0);
        assert!(y1 > 90.0);
    }
}

//! SVG charts of the bench results (plotters' SVG backend): grouped bars, lines and a labelled
//! scatter, each as one or more panels side by side.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Series colours, in order (perch first, the peer second, then further series).
const COLORS: [RGBColor; 6] = [
    RGBColor(42, 111, 219),
    RGBColor(230, 126, 34),
    RGBColor(120, 170, 240),
    RGBColor(245, 180, 110),
    RGBColor(60, 160, 90),
    RGBColor(150, 80, 170),
];

/// The colour of series `i`.
fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// One named series of a bar panel: a value per group (`None`: no bar).
pub struct Bars {
    /// The legend's name.
    pub name: String,
    /// One value per group.
    pub values: Vec<Option<f64>>,
    /// The colour index (a tool keeps its colour whichever series are present).
    pub color: usize,
}

/// A panel of grouped bars.
pub struct BarPanel {
    /// The panel's caption.
    pub title: String,
    /// The y axis' description.
    pub y_label: String,
    /// The group names along x.
    pub groups: Vec<String>,
    /// The series, drawn side by side within each group.
    pub series: Vec<Bars>,
    /// Horizontal reference lines (name, value), e.g. the memory bandwidth.
    pub rules: Vec<(String, f64)>,
}

/// One named line of a line panel: (x, y) points.
pub struct Line {
    /// The legend's name.
    pub name: String,
    /// The points; x is an index into the panel's `x_names` when it has them.
    pub points: Vec<(f64, f64)>,
    /// Draw it dashed (e.g. a 99th percentile beside the median).
    pub dashed: bool,
    /// The colour index (lines of one tool share its colour).
    pub color: usize,
}

/// A panel of lines.
pub struct LinePanel {
    /// The panel's caption.
    pub title: String,
    /// The x axis' description.
    pub x_label: String,
    /// The y axis' description.
    pub y_label: String,
    /// Names of the x positions 0, 1, 2, … (categorical x), or empty for numeric x.
    pub x_names: Vec<String>,
    /// The lines.
    pub lines: Vec<Line>,
}

/// One labelled point of a scatter.
pub struct Point {
    /// x value.
    pub x: f64,
    /// y value (> 0: the y axis is logarithmic).
    pub y: f64,
    /// The text beside the point.
    pub label: String,
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

/// Draws the legend box of `chart`'s labelled series.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    pos: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Draws `panels` side by side under `title` into an SVG document.
fn panels<T>(
    title: &str,
    panel_width: u32,
    height: u32,
    items: &[T],
    draw: impl Fn(&DrawingArea<SVGBackend<'_>, Shift>, &T) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let n = items.len().max(1);
        let root =
            SVGBackend::with_string(&mut svg, (panel_width * n as u32, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
        for (area, item) in root.split_evenly((1, n)).iter().zip(items) {
            draw(area, item)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Grouped bar panels side by side.
pub fn bars(title: &str, items: &[BarPanel]) -> Result<String> {
    // Wide enough for every group's name without rotated labels.
    let most = items.iter().map(|p| p.groups.len()).max().unwrap_or(1) as u32;
    panels(title, (56 * most + 120).max(640), 460, items, |area, p| {
        let n = p.groups.len().max(1);
        let top = p
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .copied()
            .chain(p.rules.iter().map(|r| r.1))
            .fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(&p.title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..top)
            .map_err(err)?;
        let names = &p.groups;
        let label = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .y_desc(&p.y_label)
            .draw()
            .map_err(err)?;
        let k = p.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (si, s) in p.series.iter().enumerate() {
            let c = color(s.color);
            let rects = s.values.iter().enumerate().filter_map(|(g, v)| {
                let x0 = g as f64 - 0.4 + si as f64 * width;
                v.map(|v| Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], c.filled()))
            });
            chart
                .draw_series(rects)
                .map_err(err)?
                .label(&s.name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        for (ri, (name, v)) in p.rules.iter().enumerate() {
            let c = if ri % 2 == 0 {
                RED
            } else {
                RGBColor(150, 0, 0)
            };
            chart
                .draw_series(DashedLineSeries::new(
                    [(-0.5, *v), (n as f64 - 0.5, *v)],
                    6,
                    4,
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], c.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Line panels side by side (y from 0).
pub fn lines(title: &str, items: &[LinePanel]) -> Result<String> {
    panels(title, 520, 420, items, |area, p| {
        let pts = || p.lines.iter().flat_map(|l| l.points.iter());
        let (x0, x1) = if p.x_names.is_empty() {
            let lo = pts().map(|q| q.0).fold(f64::MAX, f64::min);
            let hi = pts().map(|q| q.0).fold(f64::MIN, f64::max);
            if lo < hi { (lo, hi) } else { (0.0, 1.0) }
        } else {
            (-0.25, p.x_names.len() as f64 - 0.75)
        };
        let top = pts().map(|q| q.1).fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(&p.title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0f64..top)
            .map_err(err)?;
        let names = &p.x_names;
        let label = |v: &f64| {
            if names.is_empty() {
                return format!("{v}");
            }
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        let mut mesh = chart.configure_mesh();
        if !names.is_empty() {
            mesh.x_labels(names.len()).x_label_formatter(&label);
        }
        mesh.x_desc(&p.x_label)
            .y_desc(&p.y_label)
            .draw()
            .map_err(err)?;
        for l in &p.lines {
            let c = color(l.color);
            let style = c.stroke_width(2);
            let anno = if l.dashed {
                chart.draw_series(DashedLineSeries::new(l.points.iter().copied(), 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(l.points.iter().copied(), style))
            }
            .map_err(err)?;
            // A dashed line's swatch is two dashes.
            let gap = if l.dashed { (5, 9) } else { (14, 14) };
            anno.label(&l.name).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (gap.0, 0)], c.stroke_width(2))
                    + PathElement::new([(gap.1, 0), (14, 0)], c.stroke_width(2))
            });
            // Markers too (a lone point draws no line): dots, rings on dashed lines.
            let marker = if l.dashed {
                c.stroke_width(1)
            } else {
                c.filled()
            };
            chart
                .draw_series(
                    l.points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, marker)),
                )
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// A labelled scatter: x linear from 0, y logarithmic; one colour per series.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<Point>)],
) -> Result<String> {
    panels(title, 860, 520, &[()], |area, _| {
        let pts = || series.iter().flat_map(|s| s.1.iter()).filter(|p| p.y > 0.0);
        let xmax = pts().map(|p| p.x).fold(0.0, f64::max) * 1.1;
        let xmax = if xmax > 0.0 { xmax } else { 1.0 };
        let lo = pts().map(|p| p.y).fold(f64::MAX, f64::min);
        let hi = pts().map(|p| p.y).fold(f64::MIN, f64::max);
        let (lo, hi) = if lo <= hi {
            (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
            )
        } else {
            (1e-3, 1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(err)?;
        // The first series as filled dots, the others as rings around them (the two tools'
        // points often coincide); a label per point, once per text.
        let first: Vec<&str> = series
            .first()
            .map(|s| s.1.iter().map(|p| p.label.as_str()).collect())
            .unwrap_or_default();
        for (si, (name, points)) in series.iter().enumerate() {
            let c = color(si);
            let (radius, style) = if si == 0 {
                (4, c.filled())
            } else {
                (7, c.stroke_width(2))
            };
            chart
                .draw_series(points.iter().filter(|p| p.y > 0.0).map(|p| {
                    let text = if si == 0 || !first.contains(&p.label.as_str()) {
                        p.label.clone()
                    } else {
                        String::new()
                    };
                    EmptyElement::at((p.x, p.y))
                        + Circle::new((0, 0), radius, style)
                        + Text::new(text, (8, -14), ("sans-serif", 11).into_font())
                }))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 6, y), radius, style));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_draw_every_group_and_series() {
        let svg = bars(
            "t",
            &[BarPanel {
                title: "dot".into(),
                y_label: "GB/s".into(),
                groups: vec!["q4_0".into(), "q8_0".into()],
                series: vec![
                    Bars {
                        name: "perch".into(),
                        values: vec![Some(10.0), Some(20.0)],
                        color: 0,
                    },
                    Bars {
                        name: "ggml".into(),
                        values: vec![Some(12.0), None],
                        color: 1,
                    },
                ],
                rules: vec![("memory 1t".into(), 15.0)],
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in ["q4_0", "q8_0", "perch", "ggml", "memory 1t", "GB/s"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // perch: two bars and its legend swatch; ggml: one bar (no value for q8_0) and its
        // swatch.
        assert_eq!(svg.matches(r##"fill="#2A6FDB""##).count(), 3, "{svg}");
        assert_eq!(svg.matches(r##"fill="#E67E22""##).count(), 2, "{svg}");
    }

    #[test]
    fn lines_and_scatter_render() {
        let svg = lines(
            "serve",
            &[LinePanel {
                title: "throughput".into(),
                x_label: "streams".into(),
                y_label: "tokens/s".into(),
                x_names: vec!["1".into(), "4".into()],
                lines: vec![Line {
                    name: "perch".into(),
                    points: vec![(0.0, 10.0), (1.0, 30.0)],
                    dashed: false,
                    color: 0,
                }],
            }],
        )
        .unwrap();
        assert!(svg.contains("throughput") && svg.contains("<polyline"));
        let svg = scatter(
            "q",
            "MiB",
            "KLD",
            &[(
                "perch".into(),
                vec![Point {
                    x: 70.0,
                    y: 0.01,
                    label: "Q4_0".into(),
                }],
            )],
        )
        .unwrap();
        assert!(svg.contains("Q4_0") && svg.contains("<circle"));
    }
}
